"""Data: scanning folders, manifests, face crops, preprocessing, datasets and the synthetic demo set.

Exports load lazily: ``dfkd.data.images`` and ``dfkd.data.preprocess`` serve the ONNX inference path, which must not
import torch (the datasets and transforms do).
"""

from __future__ import annotations

from dfkd.utils import lazy_exports

_EXPORTS = {
    name: f"dfkd.data.{module}"
    for module, names in {
        "build": ("ScanReport", "build_manifest"),
        "dataset": ("ManifestDataset", "build_loader", "collate_skipping"),
        "images": ("ImageLoadError", "open_image", "to_pil"),
        "manifest": ("Manifest", "parse_ratios", "read_manifest", "write_manifest"),
        "scan": ("Sample", "scan_roots"),
        "transforms": ("build_eval_transform", "build_train_transform"),
    }.items()
    for name in names
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
