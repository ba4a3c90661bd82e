"""Evaluation: metrics, predictions, speed benchmarks, reports and figures."""

from dfkd.evaluate.metrics import compute_metrics, eer_threshold

__all__ = ["compute_metrics", "eer_threshold"]
