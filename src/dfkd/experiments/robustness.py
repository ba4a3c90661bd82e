"""`dfkd robustness`: AUC and accuracy of a model under image degradations, at five severities each.

DeeperForensics-style perturbations, applied to the decoded PIL image *before* the model's own eval preprocessing
(resize, centre crop, normalise), with fixed parameters that grow with the severity (1 = mild … 5 = strong); severity
0 is the clean image. Noise is seeded per image, so a run is reproducible whatever the loader's worker order.

| perturbation | parameter | 1 | 2 | 3 | 4 | 5 |
|---|---|---|---|---|---|---|
| jpeg | JPEG quality | 90 | 70 | 50 | 40 | 30 |
| blur | Gaussian sigma (pixels of the stored image) | 0.5 | 1 | 1.5 | 2 | 3 |
| downscale | scale before upscaling back (bilinear) | 0.7 | 0.5 | 0.35 | 0.25 | 0.15 |
| noise | Gaussian noise sigma (0–255 scale) | 4 | 8 | 12 | 18 | 25 |
| brightness_contrast | brightness × (1 + s), contrast × (1 − s), s = | 0.1 | 0.2 | 0.3 | 0.4 | 0.5 |
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset

from dfkd.data.dataset import ManifestDataset, build_loader
from dfkd.data.manifest import Manifest, read_manifest
from dfkd.data.transforms import build_eval_transform
from dfkd.utils import atomic_write, track, write_json

logger = logging.getLogger(__name__)

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def _jpeg(image: Image.Image, quality: float, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _blur(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=sigma))


def _downscale(image: Image.Image, scale: float, rng: np.random.Generator) -> Image.Image:
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(small, Image.BILINEAR).resize(image.size, Image.BILINEAR)


def _noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def _brightness_contrast(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    brighter = ImageEnhance.Brightness(image).enhance(1.0 + strength)
    return ImageEnhance.Contrast(brighter).enhance(1.0 - strength)


@dataclass(frozen=True)
class Perturbation:
    """A named degradation with one parameter value per severity (1..5)."""

    name: str
    parameter: str
    levels: tuple[float, ...]
    apply: Callable[[Image.Image, float, np.random.Generator], Image.Image]


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("jpeg", "JPEG quality", (90, 70, 50, 40, 30), _jpeg),
        Perturbation("blur", "Gaussian sigma (px)", (0.5, 1.0, 1.5, 2.0, 3.0), _blur),
        Perturbation("downscale", "scale", (0.7, 0.5, 0.35, 0.25, 0.15), _downscale),
        Perturbation("noise", "noise sigma (0-255)", (4, 8, 12, 18, 25), _noise),
        Perturbation(
            "brightness_contrast",
            "s: brightness x(1+s), contrast x(1-s)",
            (0.1, 0.2, 0.3, 0.4, 0.5),
            _brightness_contrast,
        ),
    )
}


def perturb(image: Image.Image, name: str, severity: int, *, rng: np.random.Generator | None = None) -> Image.Image:
    """``image`` (RGB) degraded by perturbation ``name`` at ``severity`` (0 = unchanged, 1..5)."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}: expected one of {', '.join(PERTURBATIONS)}")
    if severity == 0:
        return image
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 0..{SEVERITIES[-1]}, got {severity}")
    spec = PERTURBATIONS[name]
    return spec.apply(image.convert("RGB"), spec.levels[severity - 1], rng or np.random.default_rng(0))


class PerturbedDataset(Dataset):
    """A manifest split whose images are perturbed, then preprocessed: ``(image [3, H, W], label, index)``."""

    def __init__(
        self, manifest: Manifest, split: str, transform: Callable, name: str | None, severity: int, *, seed: int = 0
    ) -> None:
        self.base = ManifestDataset(manifest, split, None, on_error="skip")
        self.transform, self.name, self.severity, self.seed = transform, name, severity, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        item = self.base[index]
        if item is None:
            return None
        image, label, _ = item
        if self.name is not None and self.severity:
            rng = np.random.default_rng([self.seed, self.severity, index])
            image = perturb(image, self.name, self.severity, rng=rng)
        return self.transform(image), label, index


@torch.inference_mode()
def _predict(model: torch.nn.Module, dataset: Dataset, *, batch_size: int, num_workers: int, device) -> tuple:
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    probs, labels = [], []
    for batch in loader:
        if batch is None:
            continue
        images, batch_labels, _ = batch
        probs.append(torch.sigmoid(model(images.to(device)).float()).cpu())
        labels.append(batch_labels)
    if not probs:
        return np.zeros(0, dtype=int), np.zeros(0)
    return torch.cat(labels).numpy().astype(int), torch.cat(probs).numpy().astype(np.float64)


def auc_accuracy(labels: np.ndarray, fake_probs: np.ndarray, *, threshold: float) -> dict[str, float | None]:
    """ROC AUC (None with one class) and accuracy (predicted fake = prob ≥ threshold, as ``compute_metrics``)."""
    auc = float(roc_auc_score(labels, fake_probs)) if len(np.unique(labels)) == 2 else None
    return {"auc": auc, "accuracy": float(np.mean((fake_probs >= threshold).astype(int) == labels))}


def model_display_name(model_path: str | os.PathLike[str]) -> str:
    """``runs/student/model.safetensors`` → ``student``; any other file → its stem."""
    path = Path(model_path)
    return path.parent.name if path.stem == "model" and path.parent.name else path.stem


def evaluate_robustness(
    model_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    *,
    split: str = "test",
    perturbations: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    threshold: float | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "cpu",
    seed: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    """AUC and accuracy of one model on a split, clean and under each perturbation at each severity.

    Accuracy uses ``threshold`` (default: the model file's). Returns ``{"name", "model", "split", "n", "threshold",
    "clean": {auc, accuracy}, "perturbations": {name: {"severity": [0, 1, ...], "level": [...], "auc": [...],
    "accuracy": [...], "mean_auc", "mean_accuracy"}}}``; the lists start at severity 0 (clean); means are over
    severities ≥ 1.
    """
    from dfkd.models import load_model

    names = list(perturbations or PERTURBATIONS)
    for perturbation in names:
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {perturbation!r}: expected one of {', '.join(PERTURBATIONS)}")
    severities = sorted({int(s) for s in severities if int(s) != 0})
    if any(s not in SEVERITIES for s in severities):
        raise ValueError(f"severities must be in 1..{SEVERITIES[-1]}, got {severities}")
    manifest = read_manifest(manifest_path)
    if not manifest.split(split):
        raise ValueError(f"{manifest_path}: split {split!r} holds no images")
    model, card = load_model(model_path, device=device)
    model.eval()
    pre = card.preprocessing
    transform = build_eval_transform(pre.resize_size, pre.input_size, pre.mean, pre.std)
    value = card.threshold if threshold is None else float(threshold)
    common = {"batch_size": batch_size, "num_workers": num_workers, "device": device}

    def score(perturbation: str | None, severity: int) -> dict[str, float | None]:
        dataset = PerturbedDataset(manifest, split, transform, perturbation, severity, seed=seed)
        labels, fake_probs = _predict(model, dataset, **common)
        if len(labels) == 0:
            raise ValueError(f"{manifest_path}: no readable image in split {split!r}")
        return {**auc_accuracy(labels, fake_probs, threshold=value), "n": len(labels)}

    jobs = [(None, 0)] + [(p, s) for p in names for s in severities]
    scores = {}
    for perturbation, severity in track(jobs, total=len(jobs), description="robustness"):
        scores[perturbation, severity] = score(perturbation, severity)
    clean = scores[None, 0]
    result: dict[str, Any] = {
        "name": name or model_display_name(model_path),
        "model": str(model_path),
        "architecture": card.architecture.name,
        "manifest": str(manifest_path),
        "split": split,
        "n": clean["n"],
        "threshold": value,
        "seed": seed,
        "clean": {"auc": clean["auc"], "accuracy": clean["accuracy"]},
        "perturbations": {},
    }
    for perturbation in names:
        rows = [clean] + [scores[perturbation, s] for s in severities]
        aucs = [row["auc"] for row in rows]
        accuracies = [row["accuracy"] for row in rows]
        result["perturbations"][perturbation] = {
            "parameter": PERTURBATIONS[perturbation].parameter,
            "severity": [0, *severities],
            "level": [None, *(PERTURBATIONS[perturbation].levels[s - 1] for s in severities)],
            "auc": aucs,
            "accuracy": accuracies,
            "mean_auc": _mean(aucs[1:]),
            "mean_accuracy": _mean(accuracies[1:]),
        }
        logger.info("%s: AUC %s (clean %s)", perturbation, " ".join(_fmt(a) for a in aucs[1:]), _fmt(clean["auc"]))
    return result


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def robustness_markdown(results: list[dict[str, Any]]) -> str:
    """The tables of ``robustness.md``: AUC and accuracy, perturbation × severity (0 = clean), per model."""
    from dfkd.evaluate.report import markdown_table

    first = results[0]
    several = len(results) > 1
    lines = [
        f"Split `{first['split']}` of `{first['manifest']}` ({first['n']} images), each image degraded before the "
        "model's own preprocessing; severity 0 is the clean image, 1–5 grow stronger (parameters below). "
        f"Accuracy at each model's decision threshold. Curves: `robustness.png`, written with this table.",
    ]
    for metric, label, fmt in (("auc", "AUC", _fmt), ("accuracy", "accuracy %", _pct)):
        headers = (["model"] if several else []) + ["perturbation", "0 (clean)"]
        severities = next(iter(first["perturbations"].values()))["severity"][1:]
        headers += [str(s) for s in severities] + ["mean 1–5"]
        rows = []
        for result in results:
            for name, row in result["perturbations"].items():
                cells = ([result["name"]] if several else []) + [name]
                cells += [fmt(v) for v in row[metric]] + [fmt(row[f"mean_{metric}"])]
                rows.append(cells)
        lines += ["", f"**{label}**", "", markdown_table(headers, rows)]
    parameter_rows = [
        [name, spec.parameter, *(f"{level:g}" for level in spec.levels)]
        for name, spec in PERTURBATIONS.items()
        if name in first["perturbations"]
    ]
    lines += [
        "",
        "**Parameters**",
        "",
        markdown_table(["perturbation", "parameter", *map(str, SEVERITIES)], parameter_rows),
    ]
    return "\n".join(lines) + "\n"


def plot_robustness(results: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """One panel per perturbation: AUC (solid) and accuracy (dashed) against severity, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfkd.evaluate.plots import save_figure

    names = list(results[0]["perturbations"])
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat, names, strict=False):
        for index, result in enumerate(results):
            row = result["perturbations"][name]
            colour = colours[index % len(colours)]
            auc = [np.nan if v is None else v for v in row["auc"]]
            accuracy = [np.nan if v is None else v for v in row["accuracy"]]
            ax.plot(row["severity"], auc, marker="o", color=colour, label=f"{result['name']} AUC")
            ax.plot(row["severity"], accuracy, marker="s", linestyle="--", color=colour, label=f"{result['name']} acc")
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set(title=name, xlabel="severity (0 = clean)", ylim=(0.0, 1.02), xticks=list(range(0, SEVERITIES[-1] + 1)))
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("AUC (solid) / accuracy (dashed)")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def write_robustness(results: list[dict[str, Any]], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``robustness.json``, ``robustness.md`` and ``robustness.png`` into ``out``; return their paths.

    ``dfkd report`` includes ``<run>/robustness/robustness.md`` when present, so write into ``RUN_DIR/robustness``.
    """
    if not results:
        raise ValueError("no robustness results to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = {name: {"parameter": p.parameter, "levels": list(p.levels)} for name, p in PERTURBATIONS.items()}
    paths = {"json": out / "robustness.json", "markdown": out / "robustness.md", "plot": out / "robustness.png"}
    write_json(paths["json"], {"models": results, "perturbations": spec})
    with atomic_write(paths["markdown"], "w", encoding="utf-8") as handle:
        handle.write(robustness_markdown(results))
    plot_robustness(results, paths["plot"])
    return paths


def run_robustness(
    model_paths: Sequence[str | os.PathLike[str]],
    manifest_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`evaluate_robustness` for each model, written together by :func:`write_robustness`."""
    results = [evaluate_robustness(path, manifest_path, **kwargs) for path in model_paths]
    names = [r["name"] for r in results]
    for index, result in enumerate(results):  # two models named alike (two model.safetensors …) stay apart
        if names.count(result["name"]) > 1:
            result["name"] = f"{result['name']}-{index + 1}"
    paths = write_robustness(results, out)
    return {"results": results, "paths": paths}
