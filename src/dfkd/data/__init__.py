"""Data: scanning folders, manifests, face crops, preprocessing, datasets and the synthetic demo set.

Exports load lazily: ``dfkd.data.images`` and ``dfkd.data.preprocess`` serve the ONNX inference path, which must not
import torch (the datasets and transforms do).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ScanReport": "build",
    "build_manifest": "build",
    "ManifestDataset": "dataset",
    "build_loader": "dataset",
    "collate_skipping": "dataset",
    "ImageLoadError": "images",
    "open_image": "images",
    "to_pil": "images",
    "Manifest": "manifest",
    "parse_ratios": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "Sample": "scan",
    "scan_roots": "scan",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dfkd.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dfkd.data.{module}"), name)
