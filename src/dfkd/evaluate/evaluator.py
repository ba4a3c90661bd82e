"""`dfkd evaluate`: predictions and metrics of a model file on one manifest split."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfkd.card import ModelCard, Preprocessing
from dfkd.data.dataset import ManifestDataset, build_loader, scaled_decode_side
from dfkd.data.manifest import Manifest, read_manifest
from dfkd.data.transforms import build_eval_transform
from dfkd.evaluate.metrics import compute_metrics, per_group_metrics
from dfkd.labels import label_id
from dfkd.thresholds import choose_threshold, describe_policy, parse_policy
from dfkd.utils import atomic_write, track, write_json

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Fake-probabilities of one split, aligned with its manifest rows."""

    paths: list[str]
    sources: list[str]
    labels: np.ndarray
    fake_probs: np.ndarray


@torch.inference_mode()
def predict_split(
    model: torch.nn.Module,
    manifest: Manifest,
    split: str,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    on_error: str = "skip",
) -> Predictions:
    """Run ``model`` over a split with the card's preprocessing, decoding as training did; unreadable images are
    skipped (logged) so the rest still count."""
    transform = build_eval_transform(**preprocessing.as_dict())
    decode_side = scaled_decode_side(preprocessing.resize_size, preprocessing.scaled_decode)
    dataset = ManifestDataset(manifest, split, transform, on_error=on_error, decode_side=decode_side)  # type: ignore[arg-type]
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    model.eval().to(device)
    probs, indices = [], []
    total = (len(dataset) + batch_size - 1) // batch_size
    for batch in track(loader, total=total, description=f"predicting {split}"):
        if batch is None:
            continue
        images, _, batch_indices = batch
        probs.append(torch.sigmoid(model(images.to(device)).float()).cpu())
        indices.append(batch_indices)
    order = torch.cat(indices).numpy() if indices else np.zeros(0, dtype=int)
    fake_probs = torch.cat(probs).numpy().astype(np.float64) if probs else np.zeros(0)
    samples = [dataset.samples[i] for i in order]
    return Predictions(
        paths=[s.path for s in samples],
        sources=[s.source for s in samples],
        labels=np.array([label_id(s.label) for s in samples], dtype=int),
        fake_probs=fake_probs,
    )


def write_predictions(path: str | os.PathLike[str], predictions: Predictions) -> None:
    """``predictions.csv``: path, source, label (real/fake), fake_prob."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "source", "label", "fake_prob"])
        for path_, source, label, prob in zip(
            predictions.paths, predictions.sources, predictions.labels, predictions.fake_probs, strict=True
        ):
            writer.writerow([path_, source, "fake" if label == 1 else "real", f"{prob:.6f}"])


def _store_threshold(
    model: torch.nn.Module,
    card: ModelCard,
    model_path: str | os.PathLike[str],
    manifest: Manifest,
    policy: str,
    **predict_options: Any,
) -> ModelCard:
    """The card with the threshold ``policy`` picks on the manifest's validation split, also stored in the model file
    (same weights: caches keyed on the weights digest stay valid)."""
    from dfkd.models import save_model

    parse_policy(policy)  # a bad policy fails before any prediction
    val = predict_split(model, manifest, "val", card.preprocessing, **predict_options)
    try:
        value = choose_threshold(val.labels, val.fake_probs, policy)
    except ValueError as error:
        raise ValueError(f"{manifest.path}: val split: {error}") from None
    card = card.model_copy(update={"threshold": value, "threshold_source": describe_policy(policy)})
    save_model(model, model_path, card)
    logger.info("threshold %.4f chosen on the validation split (%s), stored in %s", value, policy, model_path)
    return card


def set_threshold(
    model_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    policy: str,
    *,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "cpu",
) -> float:
    """Choose the threshold ``policy`` (``"eer"``, ``"fpr=0.05"``) picks on the manifest's validation split and store
    it in the model file, predicting nothing else (``evaluate_model`` with a policy also scores a split)."""
    from dfkd.models import load_model

    model, card = load_model(model_path, device=device)
    options = {"batch_size": batch_size, "num_workers": num_workers, "device": device}
    return _store_threshold(model, card, model_path, read_manifest(manifest_path), policy, **options).threshold


def evaluate_model(
    model_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    threshold: str | float | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "cpu",
) -> dict:
    """Write ``predictions.csv`` and ``metrics.json`` for one split and return the metrics.

    ``threshold``: ``None`` uses the model file's; ``"auto"`` (``"eer"``) picks the EER point on the *validation*
    split and ``"fpr=0.05"`` the point calling at most 5 % of its reals fake, and stores it in the model file (the test
    split never chooses anything); a number is used as given.
    """
    from dfkd.models import load_model

    out = Path(out_dir)
    manifest = read_manifest(manifest_path)
    model, card = load_model(model_path, device=device)
    preprocessing = card.preprocessing
    common = {"batch_size": batch_size, "num_workers": num_workers, "device": device}
    threshold_source = "model file"
    if isinstance(threshold, str):
        card = _store_threshold(model, card, model_path, manifest, threshold, **common)
        value, threshold_source = card.threshold, card.threshold_source or ""
    elif threshold is None:
        value = card.threshold
        threshold_source = card.threshold_source or "model file"
    else:
        value = float(threshold)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {value}")
        threshold_source = "given"
    predictions = predict_split(model, manifest, split, preprocessing, **common)
    if len(predictions.labels) == 0:
        raise ValueError(f"{manifest_path}: split {split!r} has no readable images")
    metrics = compute_metrics(predictions.labels, predictions.fake_probs, threshold=value)
    metrics.update(
        {
            "split": split,
            "threshold_source": threshold_source,
            "n_skipped": len(manifest.split(split)) - len(predictions.labels),
            "model": str(model_path),
            "architecture": card.architecture.name,
            "manifest": str(manifest_path),
            "per_source": per_group_metrics(
                predictions.labels, predictions.fake_probs, predictions.sources, threshold=value
            ),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.csv", predictions)
    write_json(out / "metrics.json", metrics)
    return metrics
