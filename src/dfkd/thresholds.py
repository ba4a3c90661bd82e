"""Decision thresholds chosen from predictions: a pure function the trainer (its validation) and ``evaluate`` share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

__all__ = ["eer_threshold"]


def eer_threshold(labels: Sequence[int] | np.ndarray, fake_probs: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where the false-positive and false-negative rates meet (ROC from sklearn).

    Every threshold between the ROC point's score and the next lower score gives the same errors on these
    predictions; the midpoint is returned, not the edge. At the edge a model whose fakes saturate at probability 1.0
    on validation got the threshold 1.0, and every unseen fake short of saturation was called real.
    """
    labels, fake_probs = np.asarray(labels), np.asarray(fake_probs, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return math.nan, 0.5
    fpr, tpr, thresholds = skm.roc_curve(labels, fake_probs)
    fnr = 1.0 - tpr
    index = int(np.nanargmin(np.abs(fnr - fpr)))
    edge = float(np.clip(thresholds[index], 0.0, 1.0))
    below = fake_probs[fake_probs < edge]
    threshold = (edge + float(below.max())) / 2.0 if len(below) else edge
    return float((fpr[index] + fnr[index]) / 2.0), threshold
