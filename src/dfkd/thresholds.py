"""Decision thresholds chosen from predictions: a pure function the trainer (its validation) and ``evaluate`` share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

__all__ = ["choose_threshold", "describe_policy", "eer_threshold", "fpr_threshold", "parse_policy"]


def eer_threshold(labels: Sequence[int] | np.ndarray, fake_probs: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where the false-positive and false-negative rates meet (ROC from sklearn).

    Every threshold between the ROC point's score and the next lower score gives the same errors on these
    predictions; the midpoint is returned, not the edge. At the edge a model whose fakes saturate at probability 1.0
    on validation got the threshold 1.0, and every unseen fake short of saturation was called real.
    """
    labels, fake_probs = np.asarray(labels), np.asarray(fake_probs, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return math.nan, 0.5
    # every point: the thinned curve drops collinear points, often where the two rates actually meet
    fpr, tpr, thresholds = skm.roc_curve(labels, fake_probs, drop_intermediate=False)
    fnr = 1.0 - tpr
    index = int(np.nanargmin(np.abs(fnr - fpr)))
    edge = float(np.clip(thresholds[index], 0.0, 1.0))
    below = fake_probs[fake_probs < edge]
    threshold = (edge + float(below.max())) / 2.0 if len(below) else edge
    return float((fpr[index] + fnr[index]) / 2.0), threshold


def fpr_threshold(
    labels: Sequence[int] | np.ndarray, fake_probs: Sequence[float] | np.ndarray, max_fpr: float
) -> float:
    """A threshold calling at most ``max_fpr`` of the reals (label 0) fake (``prob >= threshold``), no more sparingly
    than it must: midway between the highest real score it keeps real and the next higher real score, as
    :func:`eer_threshold` places its own. Reals saturated at 1.0 cannot be kept real; the threshold is then 1.0.

    Fakes play no part: this is the operating point of a user who must keep false alarms on genuine photos rare,
    whatever it costs in missed fakes.
    """
    labels, fake_probs = np.asarray(labels), np.asarray(fake_probs, dtype=np.float64)
    reals = np.sort(fake_probs[labels == 0])[::-1]
    if len(reals) == 0:
        return 0.5
    kept = float(reals[min(math.floor(max_fpr * len(reals) + 1e-9), len(reals) - 1)])  # must stay real
    higher = reals[reals > kept]
    return (kept + float(higher.min())) / 2.0 if len(higher) else (kept + 1.0) / 2.0


def parse_policy(text: str) -> float | None:
    """``"eer"`` (or ``"auto"``) → None; ``"fpr=0.05"`` → 0.05 (at most that share of validation reals called fake);
    else ValueError."""
    value = str(text).strip().lower()
    if value in ("eer", "auto"):
        return None
    if value.startswith("fpr="):
        try:
            share = float(value[4:])
        except ValueError:
            share = math.nan
        if 0.0 < share < 1.0:
            return share
    raise ValueError(f"threshold policy must be 'eer' or 'fpr=X' with 0 < X < 1 ('auto' is 'eer'), got {text!r}")


def choose_threshold(labels, fake_probs, policy: str = "eer") -> float:
    """The threshold a policy (see :func:`parse_policy`) picks on these (validation) predictions.

    Raises ValueError when they cannot support it: the EER point needs both classes, a cap on false positives needs
    real images only (so a reals-only split will do).
    """
    max_fpr = parse_policy(policy)
    labels = np.asarray(labels)
    if max_fpr is None:
        if len(np.unique(labels)) < 2:
            raise ValueError("the EER threshold needs both real and fake images")
        return eer_threshold(labels, fake_probs)[1]
    if not (labels == 0).any():
        raise ValueError(f"threshold {policy!r} needs real images")
    return fpr_threshold(labels, fake_probs, max_fpr)


def describe_policy(policy: str) -> str:
    """How a model card names a policy's threshold: ``"validation EER"`` or ``"validation: ≤ 5 % of reals fake"``."""
    max_fpr = parse_policy(policy)
    return "validation EER" if max_fpr is None else f"validation: ≤ {100 * max_fpr:g} % of reals fake"
