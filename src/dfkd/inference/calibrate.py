"""A detector's threshold set from a user's own genuine photos: the operating point for their collection.

A model's threshold is chosen on its validation reals, which share the training collections' cameras, framing and
compression. On a collection it never saw, genuine photos can score higher: the bundled detector's recipe, trained
without an FFHQ-style collection, called a third of its photos fake at the card's threshold
(docs/results/generalisation.md). Scoring a sample of genuine photos of the collection to be checked, exactly as
``detect`` scores them (face found, cropped as in training), and capping the share of them called fake moves the
threshold to where that collection's reals lie; what it costs in missed fakes shows when fakes are scored too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfkd.inference.backends import is_onnx_file
from dfkd.inference.report import SCORED_STATUSES
from dfkd.thresholds import fpr_threshold

if TYPE_CHECKING:
    from dfkd.inference.detector import Detector

__all__ = ["Calibration", "calibrate", "save_calibrated", "score_items"]


@dataclass(frozen=True)
class Calibration:
    """The threshold that calls at most ``max_fpr`` of ``real_scores`` fake, and what it changes."""

    threshold: float
    max_fpr: float
    previous_threshold: float
    real_scores: np.ndarray  # fake probabilities of the genuine items scored
    fake_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # of known fakes, when given: the cost
    failed: tuple[tuple[str, str], ...] = ()  # (item, why) for items that could not be scored

    @property
    def source(self) -> str:
        """How a model card names this threshold; the previous one is kept in it, as the card's other figures were
        measured at that one."""
        return (
            f"calibrated: ≤ {100 * self.max_fpr:g} % of {len(self.real_scores)} genuine photos fake; "
            f"was {self.previous_threshold:.4g}"
        )

    @property
    def too_few(self) -> bool:
        """True when no genuine item may be called fake at this share (fewer than 1 / max_fpr of them): the
        threshold then sits just above the highest real score, and one more photo could move it far."""
        return math.floor(self.max_fpr * len(self.real_scores) + 1e-9) == 0

    def share_called_fake(self, scores: np.ndarray, threshold: float | None = None) -> float:
        """The share of ``scores`` at or above ``threshold`` (default: the calibrated one); NaN for none."""
        if len(scores) == 0:
            return math.nan
        return float(np.mean(scores >= (self.threshold if threshold is None else threshold)))


def score_items(
    detector: Detector, paths: Sequence[str | os.PathLike[str]], *, faces: str | None = None
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Fake probabilities of every image and video under ``paths`` as ``detect`` scores them, and the items that
    could not be scored (item, reason)."""
    from dfkd.inference.run import detect_paths

    results, _ = detect_paths(detector, paths, faces=faces)
    scores = [float(result["fake_prob"]) for result in results if result["status"] in SCORED_STATUSES]
    failed = [
        (str(result["input"]), str(result["error"])) for result in results if result["status"] not in SCORED_STATUSES
    ]
    return np.asarray(scores, dtype=np.float64), failed


def calibrate(
    detector: Detector,
    reals: Sequence[str | os.PathLike[str]],
    max_fpr: float = 0.05,
    *,
    fakes: Sequence[str | os.PathLike[str]] = (),
    faces: str | None = None,
) -> Calibration:
    """Score the genuine images and videos under ``reals`` (and the known fakes under ``fakes``, to show the cost) and
    choose the threshold calling at most ``max_fpr`` of the genuine ones fake.

    The detector is not changed: ``detector.use_threshold(calibration.threshold, calibration.source)`` applies it,
    :func:`save_calibrated` writes a model file carrying it. Raises ValueError when ``max_fpr`` is not in (0, 1) or
    no genuine item could be scored.
    """
    if not 0.0 < max_fpr < 1.0:
        raise ValueError(f"max_fpr must be between 0 and 1 (a share of the genuine photos), got {max_fpr}")
    real_scores, failed = score_items(detector, reals, faces=faces)
    if len(real_scores) == 0:
        raise ValueError(f"no genuine photo could be scored under {', '.join(map(str, reals)) or 'no path'}")
    fake_scores, fake_failed = score_items(detector, fakes, faces=faces) if fakes else (np.zeros(0), [])
    threshold = fpr_threshold(np.zeros(len(real_scores), dtype=int), real_scores, max_fpr)
    return Calibration(
        threshold=threshold,
        max_fpr=max_fpr,
        previous_threshold=detector.threshold,
        real_scores=real_scores,
        fake_scores=fake_scores,
        failed=tuple(failed + fake_failed),
    )


def save_calibrated(model: str | Path, out: str | Path, calibration: Calibration) -> None:
    """Write ``model`` (a dfkd ``.safetensors`` or an exported ``.onnx`` file) to ``out`` with the calibrated
    threshold on its card, atomically; the weights are unchanged, and ``out`` may be ``model`` itself."""
    update: dict[str, Any] = {"threshold": calibration.threshold, "threshold_source": calibration.source}
    if is_onnx_file(model):
        import onnx

        from dfkd.deploy.onnx_format import read_onnx_card, save_onnx_proto, write_onnx_card

        card = read_onnx_card(model).model_copy(update=update)
        proto = onnx.load(str(model))
        write_onnx_card(proto, card)
        save_onnx_proto(proto, Path(out))
        return
    from dfkd.models.checkpoint import read_model_card, update_card

    update_card(model, read_model_card(model).model_copy(update=update), out=out)
