"""One sweep trial: train the config, then score the selected model on the validation split.

A trial runner is any picklable callable ``runner(config, run_dir, on_epoch) -> TrialOutcome``. ``on_epoch(row)``
takes a trainer history row (``epoch``, ``val_loss``, ``val_auc``, ``val_accuracy`` …), reports it to the study and
returns True when the pruner says stop. :func:`train_and_validate` is the real one; tests pass fast fakes.

Pruning uses the trainer's ``epoch_callback``: after each epoch (its metrics, best model and checkpoint saved) the
row goes to ``on_epoch``; when the pruner says stop, the callback raises and the trial ends with its best model so
far, which is then scored like a finished one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfkd.config import RunConfig

logger = logging.getLogger(__name__)

OnEpoch = Callable[[dict], bool]


class PruneTrial(Exception):
    """Raised from a trainer's epoch callback to stop a trial the pruner rejected."""


@dataclass
class TrialOutcome:
    """What a trial produced. ``metrics``: the selected model on the validation split (``compute_metrics`` keys)."""

    metrics: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    model_path: str | None = None
    pruned: bool = False
    teacher_auc: float | None = None


def objective_value(objective: str, metrics: dict[str, Any]) -> float:
    """The sweep objective from validation metrics: AUC, accuracy at 0.5, or ``val_loss`` = BCE (log loss).

    ``val_loss`` is the plain BCE of the selected model, comparable across α, T and KD losses (the trainer's own
    validation loss is the mixed KD objective, which is not).
    """
    key = {"val_auc": "roc_auc", "val_accuracy": "accuracy", "val_loss": "log_loss"}[objective]
    value = metrics.get(key)
    return float(value) if value is not None else math.nan


def history_value(objective: str, row: dict) -> float:
    """The per-epoch value reported for pruning (the trainer's history; ``val_loss`` there is the KD objective)."""
    return float(row.get(objective, math.nan))


def device_for(config: RunConfig) -> str:
    """``cuda`` when the config allows it and one is present, else ``cpu``."""
    import torch

    if config.train.accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def validate_model(config: RunConfig, model_path: Path) -> dict[str, Any]:
    """Metrics of a model file on the validation split at threshold 0.5 (the test split is never touched)."""
    from dfkd.data.manifest import read_manifest
    from dfkd.evaluate.evaluator import predict_split
    from dfkd.evaluate.metrics import compute_metrics
    from dfkd.models import load_model

    assert config.data.manifest is not None
    device = device_for(config)
    model, card = load_model(model_path, device=device)
    predictions = predict_split(
        model,
        read_manifest(config.data.manifest),
        "val",
        card.preprocessing,
        batch_size=config.data.eval_batch_size or config.data.batch_size,
        num_workers=config.data.num_workers,
        device=device,
        on_error=config.data.on_error,
    )
    metrics = compute_metrics(predictions.labels, predictions.fake_probs, threshold=0.5)
    metrics.pop("confusion_matrix", None)
    return metrics


def train_and_validate(config: RunConfig, run_dir: Path, on_epoch: OnEpoch) -> TrialOutcome:
    """Train one trial (pruned early when ``on_epoch`` says so) and score its selected model on validation."""
    from dfkd.train import train

    run_dir = Path(run_dir)

    def callback(epoch: int, row: dict) -> None:
        if on_epoch(row) and epoch < config.train.epochs:
            raise PruneTrial(f"pruned after epoch {epoch}")

    try:
        result = train(config, run_dir, overwrite=True, epoch_callback=callback)  # a re-run trial starts over
        history, best_epoch, teacher_auc, pruned = result.history, result.best_epoch, result.teacher_auc, False
    except PruneTrial:
        history, best_epoch, teacher_auc, pruned = _read_history(run_dir), _best_epoch_of(run_dir), None, True
    model_path = run_dir / "model.safetensors"
    if not model_path.exists():
        raise RuntimeError(f"trial produced no model (no epoch had a finite {config.train.monitor})")
    return TrialOutcome(
        metrics=validate_model(config, model_path),
        history=list(history),
        best_epoch=best_epoch,
        model_path=str(model_path),
        pruned=pruned,
        teacher_auc=teacher_auc,
    )


def _read_history(run_dir: Path) -> list[dict]:
    import csv

    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _best_epoch_of(run_dir: Path) -> int:
    from dfkd.models import read_model_card

    path = run_dir / "model.safetensors"
    if not path.exists():
        return -1
    return int(read_model_card(path).metrics.get("epoch", -1))
