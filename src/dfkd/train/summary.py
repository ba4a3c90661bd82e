"""What a run writes about itself: the per-epoch history (``metrics.csv``) and the saved model's metadata."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from dfkd.config import RunConfig
from dfkd.data.manifest import manifest_face_crop
from dfkd.thresholds import describe_policy
from dfkd.utils import atomic_write

logger = logging.getLogger(__name__)
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_auc", "val_accuracy", "lr", "seconds")


def write_history(path: Path, history: list[dict]) -> None:
    """The history rows as CSV, one line per epoch."""
    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def training_face_crop(manifest_path: str) -> tuple[dict | None, list[str]]:
    """The manifest's face-crop record, read once per run; its crop-faces warnings (framing that differs between real
    and fake) are repeated in the log."""
    face_crop, warnings = manifest_face_crop(manifest_path)
    for line in warnings:
        logger.warning("training images' face crops: %s", line)
    return face_crop, warnings


def model_card_fields(
    config: RunConfig, view: dict, row: dict, teacher_auc: float | None, face_crop: tuple[dict | None, list[str]]
) -> dict:
    """A saved epoch's card fields: preprocessing, face crop (:func:`training_face_crop`), metrics, summary."""
    crop, crop_warnings = face_crop
    threshold = {}
    if "val_threshold" in row:  # train.threshold's point on validation; `dfkd evaluate --threshold` may set it again
        source = f"{describe_policy(config.train.threshold)} during training"
        threshold = {"threshold": row["val_threshold"], "threshold_source": source}
    return {
        **threshold,
        "preprocessing": {**view, "scaled_decode": config.data.scaled_decode},
        "face_crop": crop,
        "metrics": {k: row[k] for k in ("epoch", "val_loss", "val_auc", "val_accuracy")},
        "training": {
            "distill": config.distill.model_dump(),
            "teacher_val_auc": teacher_auc,
            "manifest": config.data.manifest,
            "monitor": config.train.monitor,
            "face_crop_warnings": crop_warnings,
        },
    }
