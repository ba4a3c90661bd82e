"""Data: scanning folders, manifests, preprocessing, datasets and the synthetic demo set."""

from dfkd.data.build import ScanReport, build_manifest
from dfkd.data.dataset import ManifestDataset, build_loader, collate_skipping
from dfkd.data.images import ImageLoadError, open_image, to_pil
from dfkd.data.manifest import Manifest, parse_ratios, read_manifest, write_manifest
from dfkd.data.scan import Sample, scan_roots
from dfkd.data.transforms import build_eval_transform, build_train_transform

__all__ = [
    "ImageLoadError",
    "Manifest",
    "ManifestDataset",
    "Sample",
    "ScanReport",
    "build_eval_transform",
    "build_loader",
    "build_manifest",
    "build_train_transform",
    "collate_skipping",
    "open_image",
    "parse_ratios",
    "read_manifest",
    "scan_roots",
    "to_pil",
    "write_manifest",
]
