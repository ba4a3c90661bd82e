"""Classification metrics for fake-probabilities (fake = 1), from scikit-learn and torchmetrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import binary_calibration_error

from dfkd.thresholds import eer_threshold

PROB_CLIP = 1e-7


def compute_metrics(
    labels: Sequence[int] | np.ndarray, fake_probs: Sequence[float] | np.ndarray, *, threshold: float = 0.5
) -> dict:
    """All scalar metrics dfkd reports for one set of predictions (``predicted fake`` = prob ≥ threshold).

    ``f1`` is the fake class's F1; ``f1_real`` the real class's (the reference's "F1", whose labels were swapped).
    Threshold-free metrics (AUC, AP, EER) are NaN when only one class is present.

    Raises:
        ValueError: no prediction at all, or a fake probability that is not a number (a model that diverged).
    """
    labels = np.asarray(labels).astype(int)
    fake_probs = np.asarray(fake_probs, dtype=np.float64)
    if len(labels) == 0:
        raise ValueError("no predictions to score: the split is empty (or none of its images could be read)")
    if not np.isfinite(fake_probs).all():
        bad = int((~np.isfinite(fake_probs)).sum())
        raise ValueError(f"{bad} of {len(fake_probs)} fake probabilities are not numbers (NaN): the model diverged")
    predicted = (fake_probs >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    eer, _ = eer_threshold(labels, fake_probs)
    clipped = np.clip(fake_probs, PROB_CLIP, 1 - PROB_CLIP)
    result = {
        "n": len(labels),
        "n_fake": int(labels.sum()),
        "n_real": int(len(labels) - labels.sum()),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, pos_label=1, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, pos_label=1, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, pos_label=1, zero_division=0)),
        "f1_real": float(skm.f1_score(labels, predicted, pos_label=0, zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)) if both else math.nan,
        "roc_auc": float(skm.roc_auc_score(labels, fake_probs)) if both else math.nan,
        "average_precision": float(skm.average_precision_score(labels, fake_probs)) if both else math.nan,
        "eer": eer,
        "log_loss": float(skm.log_loss(labels, clipped, labels=[0, 1])),
        "ece": float(
            binary_calibration_error(torch.from_numpy(fake_probs).float(), torch.from_numpy(labels), n_bins=15)
        ),
        "confusion_matrix": skm.confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
    }
    return result


def per_group_metrics(
    labels: Sequence[int], fake_probs: Sequence[float], groups: Sequence[str], *, threshold: float
) -> dict[str, dict]:
    """:func:`compute_metrics` for each distinct group (e.g. each ``source``)."""
    labels_np, probs_np, groups_np = np.asarray(labels), np.asarray(fake_probs), np.asarray(groups)
    return {
        str(group): compute_metrics(labels_np[groups_np == group], probs_np[groups_np == group], threshold=threshold)
        for group in sorted(set(groups_np.tolist()))
    }
