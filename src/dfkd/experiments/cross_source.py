"""`dfkd cross-source`: train on some sources, test on every source; the AUC / accuracy matrix of the transfer.

For a manifest with several ``source`` values (one per dataset root: a generator, a site, a collection) this
answers the reference's future-work question, "does a detector trained on one source work on another?":

- training sets: each source alone; each "all but S" (leave one source out — trained without S's reals and fakes:
  "how well is S detected by a model that never saw it"; skipped where it equals a single source, as with two
  sources); with ``all_but_fakes``, each "all but S's fakes" (every source's reals, every other source's fakes: "with
  genuine photos of S but no example of its manipulations, how well are they caught"); all sources together; and with
  ``reals_sbi``, the reals of every source with self-blended fakes only (no labelled fake at all: which manipulations
  blending alone teaches);
- each training set gets its own manifest (the train and val rows of its sources only: the model is selected on
  validation images of the sources it was trained on, never on the held-out one) and its own run folder;
- every trained model is scored on the test split of every source, at its decision threshold (0.5 unless set):
  AUC, accuracy and the false-positive rate on the source's reals (what a detector costs on photos it never saw).

Outputs in ``out``: ``cross_source.json``, ``cross_source.md`` and ``cross_source.png`` (heat maps), plus
``manifests/`` and ``runs/<training set>/`` (a finished cell is not trained again when the command is rerun).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfkd.config import EXECUTION_SETTINGS, RunConfig, differing_keys
from dfkd.data.manifest import read_manifest, write_manifest
from dfkd.experiments.robustness import auc_accuracy
from dfkd.utils import atomic_write, sha256_file, write_json

logger = logging.getLogger(__name__)
DONE_FILE = "cross_source_done.json"


@dataclass(frozen=True)
class TrainingSet:
    """The sources one cross-source model is trained on; ``name`` is its row label and run folder."""

    name: str
    sources: tuple[str, ...]
    kind: str  # "only", "all_but", "all_but_fakes", "all" or "reals_sbi"
    # sources whose reals are trained on but not their fakes: one for "all_but_fakes", every one for "reals_sbi"
    fakes_excluded: tuple[str, ...] = ()


def seen_in_training(training_set: dict[str, Any], source: str) -> str:
    """What a training set (an entry of ``train_sets``) saw of a source: ``"all"``, ``"reals"`` (its reals but none of
    its fakes) or ``"none"``."""
    if source not in training_set["sources"]:
        return "none"
    return "reals" if source in training_set["fakes_excluded"] else "all"


def plan_training_sets(
    sources: list[str],
    *,
    all_but: bool = True,
    all_but_fakes: bool = False,
    include_all: bool = True,
    reals_sbi: bool = False,
) -> list[TrainingSet]:
    """Each source alone, then each leave-one-out set (when it differs from a single source), then (``all_but_fakes``)
    each all-sources set without one source's fakes, then all sources, then (``reals_sbi``) the reals of all sources
    with self-blended fakes only.

    Raises:
        ValueError: fewer than two sources.
    """
    sources = sorted(set(sources))
    if len(sources) < 2:
        found = sources[0] if sources else "none"
        raise ValueError(
            f"cross-source needs a manifest with at least two sources, found one ({found}): scan several dataset "
            "roots into one manifest (dfkd scan ROOT_A ROOT_B …), each root becomes a source"
        )
    plan = [TrainingSet(source, (source,), "only") for source in sources]
    if all_but and len(sources) > 2:
        plan += [
            TrainingSet(f"all_but_{source}", tuple(s for s in sources if s != source), "all_but") for source in sources
        ]
    if all_but_fakes:
        plan += [
            TrainingSet(f"all_but_{source}_fakes", tuple(sources), "all_but_fakes", (source,)) for source in sources
        ]
    if include_all:
        plan.append(TrainingSet("all", tuple(sources), "all"))
    if reals_sbi:
        plan.append(TrainingSet("reals_sbi", tuple(sources), "reals_sbi", tuple(sources)))
    return plan


def _cell_recipe(config: RunConfig, subset: Path) -> dict[str, Any]:
    """What a cell is trained from: its manifest's content and its settings."""
    return {"manifest_sha256": sha256_file(subset), "settings": config.model_dump(mode="json")}


def _check_finished_cell(done: Path, recipe: dict[str, Any]) -> None:
    """Refuse to reuse a finished cell trained from other data or settings: its scores would be reported as this
    recipe's, and a resplit manifest would score it on images it trained on. Cells finished before the recipe was
    recorded are trusted."""
    record = json.loads(done.read_text())
    if "settings" not in record:
        return
    # where and how it ran aside; the manifest by its content (the file is this cell's own, rewritten each run)
    changed = differing_keys(record["settings"], recipe["settings"], ignore=EXECUTION_SETTINGS | {"data.manifest"})
    if record.get("manifest_sha256") != recipe["manifest_sha256"]:
        changed.insert(0, "training images (the manifest's rows for it)")
    if changed:
        raise ValueError(
            f"{done.parent} was trained with other {', '.join(changed)}: pass --retrain, or give another --out"
        )


def write_subset_manifest(
    manifest_path: str | os.PathLike[str],
    sources: tuple[str, ...],
    out: Path,
    *,
    fakes_excluded: tuple[str, ...] = (),
) -> Path:
    """A manifest holding the train and val rows of ``sources`` only (paths absolute), without the fakes of the
    sources in ``fakes_excluded``.

    The parent's scanned roots and face-crop record travel with it, so landmarks and the crop settings are found.
    """
    from dfkd.data.manifest import read_sidecar

    manifest = read_manifest(manifest_path)
    samples = [
        s
        for s in manifest.samples
        if s.source in sources
        and s.split in ("train", "val")
        and not (s.label == "fake" and s.source in fakes_excluded)
    ]
    for split in ("train", "val"):
        if not any(s.split == split for s in samples):
            raise ValueError(f"{manifest_path}: sources {', '.join(sources)} have no {split} images")
    parent = read_sidecar(manifest_path)
    info = {key: parent[key] for key in ("roots", "face_crop", "face_crop_warnings") if key in parent}
    info.update(
        parent_manifest=str(Path(manifest_path).resolve()),
        sources=list(sources),
        reals_only=set(sources) <= set(fakes_excluded),
        fakes_excluded=list(fakes_excluded),
    )
    write_manifest(out, samples, info)
    return out


def score_by_source(
    model_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    *,
    split: str = "test",
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """``{source: {auc, accuracy, n}}`` of one model on one split, at the model file's threshold."""
    from dfkd.evaluate.evaluator import predict_split
    from dfkd.models import load_model

    manifest = read_manifest(manifest_path)
    model, card = load_model(model_path, device=device)
    predictions = predict_split(
        model,
        manifest,
        split,
        card.preprocessing,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
    )
    threshold = card.threshold
    sources = np.asarray(predictions.sources)
    cells: dict[str, dict[str, Any]] = {}
    for source in manifest.sources:
        keep = sources == source
        if not keep.any():
            cells[source] = {"auc": None, "accuracy": None, "fpr": None, "n": 0}
            continue
        labels, fake_probs = predictions.labels[keep], predictions.fake_probs[keep]
        scores = auc_accuracy(labels, fake_probs, threshold=threshold)
        fpr = float((fake_probs[labels == 0] >= threshold).mean()) if (labels == 0).any() else None
        cells[source] = {**scores, "fpr": fpr, "n": int(keep.sum())}
    return cells


def run_cross_source(
    manifest_path: str | os.PathLike[str],
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    all_but: bool = True,
    all_but_fakes: bool = False,
    include_all: bool = True,
    reals_sbi: bool = False,
    eval_device: str = "cpu",
    retrain: bool = False,
) -> dict[str, Any]:
    """Train one model per training set (see the module docstring) and score it on every source's test split.

    ``config`` is the training recipe (its ``data.manifest`` is replaced per training set). Returns the result
    written to ``cross_source.json``: ``train_sets`` (in order: ``[{name, sources, kind, fakes_excluded}]``),
    ``test_sources`` and ``matrix[train_set][test_source] = {auc, accuracy, n}``.
    """
    from dfkd.train import train

    out = Path(out)
    manifest = read_manifest(manifest_path)
    plan = plan_training_sets(
        manifest.sources, all_but=all_but, all_but_fakes=all_but_fakes, include_all=include_all, reals_sbi=reals_sbi
    )
    test_sources = manifest.sources
    missing = [source for source in test_sources if not any(s.source == source for s in manifest.split("test"))]
    if missing:
        logger.warning("sources without test images (their column stays empty): %s", ", ".join(missing))
    if config.distill.loss != "none":
        logger.warning(
            "distill.loss=%s: every cell distils from the same teacher (%s), which may have seen the held-out "
            "sources; a no-KD recipe gives the clean transfer matrix",
            config.distill.loss,
            config.teacher.model or config.teacher.cache,
        )
    result: dict[str, Any] = {
        "manifest": str(manifest_path),
        "model": config.model.name,
        "train_sets": [
            {"name": t.name, "sources": list(t.sources), "kind": t.kind, "fakes_excluded": list(t.fakes_excluded)}
            for t in plan
        ],
        "test_sources": test_sources,
        "matrix": {},
        "runs": {},
    }
    for index, training_set in enumerate(plan, start=1):
        run_dir = out / "runs" / training_set.name
        model_path = run_dir / "model.safetensors"
        done = run_dir / DONE_FILE
        logger.info("cross-source %d/%d: training on %s", index, len(plan), ", ".join(training_set.sources))
        subset = write_subset_manifest(
            manifest_path,
            training_set.sources,
            out / "manifests" / f"{training_set.name}.csv",
            fakes_excluded=training_set.fakes_excluded,
        )
        cell_config = config.model_copy(deep=True)
        cell_config.data.manifest = str(subset.resolve())
        if training_set.kind == "reals_sbi":
            cell_config.data.synthetic_fakes = "sbi"
        recipe = _cell_recipe(cell_config, subset)
        if not retrain and done.exists() and model_path.exists():
            _check_finished_cell(done, recipe)
        if retrain or not (done.exists() and model_path.exists()):
            started = time.perf_counter()
            resume = not retrain and (run_dir / "last.ckpt").exists()  # an interrupted cell continues
            trained = train(cell_config, run_dir, resume=resume, overwrite=not resume)  # an unfinished cell is redone
            write_json(
                done,
                {
                    "best_epoch": trained.best_epoch,
                    "best_value": trained.best_value,
                    "seconds": time.perf_counter() - started,
                    **recipe,
                },
            )
        else:
            logger.info("  already trained: %s", model_path)
        cells = score_by_source(
            model_path,
            manifest_path,
            batch_size=config.data.eval_batch_size or config.data.batch_size,
            num_workers=config.data.num_workers,
            device=eval_device,
        )
        result["matrix"][training_set.name] = cells
        result["runs"][training_set.name] = str(run_dir)
    write_cross_source(result, out)
    return result


def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{scale * value:.{digits}f}"


def cross_source_markdown(result: dict[str, Any]) -> str:
    """AUC and accuracy tables (rows: training set, columns: test source); ``*`` marks in-source cells."""
    from dfkd.evaluate.report import markdown_table

    sources = result["test_sources"]
    lines = [
        f"Model `{result['model']}` trained on each row's sources (train split; val split of the same sources "
        f"for selection) and scored on each column's test split, manifest `{result['manifest']}`. "
        "`*` marks a test source the model was trained on (in-source), `°` one whose reals it was trained on but "
        "none of whose fakes (a manipulation unseen on that collection's photos); the others measure transfer.",
    ]
    metrics = (
        ("auc", "AUC", 1.0, 3),
        ("accuracy", "accuracy %", 100.0, 1),
        ("fpr", "false positives on reals %", 100.0, 1),
    )
    for metric, label, scale, digits in metrics:
        rows = []
        for training_set in result["train_sets"]:
            name = training_set["name"]
            cells = result["matrix"][name]
            row = [name]
            for source in sources:
                mark = {"all": "*", "reals": "°", "none": ""}[seen_in_training(training_set, source)]
                row.append(_fmt(cells[source].get(metric), scale, digits) + mark)
            rows.append(row)
        test_n = {s: next(iter(result["matrix"].values()))[s]["n"] for s in sources}
        headers = ["trained on ↓ / tested on →", *(f"{s} (n={test_n[s]})" for s in sources)]
        lines += ["", f"**{label}**", "", markdown_table(headers, rows)]
    return "\n".join(lines) + "\n"


def plot_cross_source(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Two heat maps (AUC, accuracy): training set × test source, annotated; in-source cells outlined, cells whose
    reals only were trained on outlined dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from dfkd.evaluate.plots import save_figure

    names, sources = [t["name"] for t in result["train_sets"]], result["test_sources"]
    seen = {t["name"]: {s: seen_in_training(t, s) for s in sources} for t in result["train_sets"]}
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 2.0 * len(sources) * 2, 1.4 + 0.55 * len(names)), squeeze=False)
    for ax, (metric, title) in zip(axes.flat, (("auc", "AUC"), ("accuracy", "accuracy")), strict=True):
        values = np.array(
            [[np.nan if (v := result["matrix"][n][s][metric]) is None else v for s in sources] for n in names],
            dtype=float,
        )
        image = ax.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
        for i, name in enumerate(names):
            for j, source in enumerate(sources):
                text = "–" if np.isnan(values[i, j]) else f"{values[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=9)
                if seen[name][source] != "none":
                    style = "solid" if seen[name][source] == "all" else "dashed"
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5, linestyle=style
                        )
                    )
        ax.set_xticks(range(len(sources)), sources, rotation=20, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set(xlabel="tested on", ylabel="trained on", title=f"{title} (outlined: in-source; dashed: its reals only)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def write_cross_source(result: dict[str, Any], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``cross_source.json``, ``cross_source.md`` and ``cross_source.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "cross_source.json", "markdown": out / "cross_source.md", "plot": out / "cross_source.png"}
    write_json(paths["json"], result)
    with atomic_write(paths["markdown"], "w", encoding="utf-8") as handle:
        handle.write(cross_source_markdown(result))
    plot_cross_source(result, paths["plot"])
    return paths
