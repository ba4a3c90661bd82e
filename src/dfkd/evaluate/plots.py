"""The report's figures (matplotlib, Agg backend): ROC, PR, confusion matrices, curves, reliability, cost."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve, roc_curve

from dfkd.evaluate.runs import RunRecord
from dfkd.utils import atomic_write


def _scored(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.labels is not None and len(np.unique(r.labels)) == 2]


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Lay out, write (atomically, in the format of the file's suffix) and close ``fig``; the path."""
    path = Path(path)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return path


def plot_roc(runs: list[RunRecord], path: Path) -> Path:
    """ROC curves of every evaluated run."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for run in _scored(runs):
        fpr, tpr, _ = roc_curve(run.labels, run.fake_probs)
        ax.plot(fpr, tpr, label=f"{run.name} (AUC {run.metrics.get('roc_auc', math.nan):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)", title="ROC")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_pr(runs: list[RunRecord], path: Path) -> Path:
    """Precision-recall curves (fake = positive)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for run in _scored(runs):
        precision, recall, _ = precision_recall_curve(run.labels, run.fake_probs)
        ax.plot(recall, precision, label=f"{run.name} (AP {run.metrics.get('average_precision', math.nan):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (fake = positive)", ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def plot_confusion(runs: list[RunRecord], path: Path) -> Path:
    """One confusion matrix per evaluated run, at its threshold."""
    scored = [r for r in runs if r.metrics.get("confusion_matrix")]
    columns = max(1, min(3, len(scored)))
    rows = max(1, math.ceil(len(scored) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, run in zip(axes.flat, scored, strict=False):
        ax.axis("on")
        matrix = np.array(run.metrics["confusion_matrix"])
        ConfusionMatrixDisplay(matrix, display_labels=["real", "fake"]).plot(ax=ax, colorbar=False)
        ax.set_title(f"{run.name}\nthreshold {run.metrics.get('threshold', 0.5):.3f}", fontsize=8)
    return save_figure(fig, path)


def plot_training_curves(runs: list[RunRecord], path: Path) -> Path:
    """Validation loss and AUC per epoch."""
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        if not run.history:
            continue
        epochs = [row["epoch"] for row in run.history]
        loss_ax.plot(epochs, [row["val_loss"] for row in run.history], marker="o", label=run.name)
        auc_ax.plot(epochs, [row["val_auc"] for row in run.history], marker="o", label=run.name)
    loss_ax.set(xlabel="epoch", ylabel="validation loss (training objective)", title="Validation loss")
    auc_ax.set(xlabel="epoch", ylabel="validation AUC", title="Validation AUC")
    if auc_ax.get_legend_handles_labels()[0]:
        auc_ax.legend(fontsize=7)
    else:
        auc_ax.text(0.5, 0.5, "no per-epoch history", ha="center", va="center", transform=auc_ax.transAxes)
    return save_figure(fig, path)


def plot_reliability(runs: list[RunRecord], path: Path, n_bins: int = 10) -> Path:
    """Reliability diagram: observed fake frequency against predicted fake probability."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for run in _scored(runs):
        observed, predicted = calibration_curve(run.labels, run.fake_probs, n_bins=n_bins, strategy="uniform")
        ax.plot(predicted, observed, marker="o", label=f"{run.name} (ECE {run.metrics.get('ece', math.nan):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="predicted fake probability", ylabel="observed fake frequency", title="Reliability")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_cost(runs: list[RunRecord], path: Path) -> Path:
    """Test accuracy against parameters, GFLOPs and throughput."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes_info = (("params", "parameters (M)", 1e-6), ("gflops", "GFLOPs per image", 1.0), ("throughput", "img/s", 1.0))
    for ax, (key, label, scale) in zip(axes, axes_info, strict=True):
        for run in runs:
            if not run.bench or "accuracy" not in run.metrics:
                continue
            if key == "throughput":
                value = max(v["throughput"] for v in run.bench["model_only"].values())
            else:
                value = run.bench[key] * scale
            ax.scatter(value, run.metrics["accuracy"] * 100)
            ax.annotate(run.name, (value, run.metrics["accuracy"] * 100), fontsize=7)
        ax.set(xlabel=label, ylabel="test accuracy %", xscale="log")
    fig.suptitle("Accuracy against cost")
    return save_figure(fig, path)


def write_all_plots(runs: list[RunRecord], out_dir: Path) -> dict[str, Path]:
    """Every figure of the report, as PNG files in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "roc": plot_roc(runs, out_dir / "roc.png"),
        "pr": plot_pr(runs, out_dir / "pr.png"),
        "confusion": plot_confusion(runs, out_dir / "confusion.png"),
        "curves": plot_training_curves(runs, out_dir / "training_curves.png"),
        "reliability": plot_reliability(runs, out_dir / "reliability.png"),
        "cost": plot_cost(runs, out_dir / "accuracy_vs_cost.png"),
    }
