"""What a run writes about itself: the per-epoch history (``metrics.csv``) and the saved model's metadata."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from dfkd.config import RunConfig
from dfkd.data.manifest import manifest_face_crop
from dfkd.utils import atomic_write

logger = logging.getLogger(__name__)
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_auc", "val_accuracy", "lr", "seconds")


def write_history(path: Path, history: list[dict]) -> None:
    """The history rows as CSV, one line per epoch."""
    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def warn_about_face_crops(manifest_path: str) -> None:
    """Repeat the crop-faces warnings recorded with the manifest (framing that differs between real and fake)."""
    for line in manifest_face_crop(manifest_path)[1]:
        logger.warning("training images' face crops: %s", line)


def _model_metadata(config: RunConfig, view: dict, row: dict, teacher_auc: float | None) -> dict:
    face_crop, crop_warnings = manifest_face_crop(config.data.manifest) if config.data.manifest else (None, [])
    return {
        "preprocessing": view,
        "face_crop": face_crop,
        "metrics": {k: row[k] for k in ("epoch", "val_loss", "val_auc", "val_accuracy")},
        "training": {
            "distill": config.distill.model_dump(),
            "teacher_val_auc": teacher_auc,
            "manifest": config.data.manifest,
            "monitor": config.train.monitor,
            "face_crop_warnings": crop_warnings,
        },
    }
