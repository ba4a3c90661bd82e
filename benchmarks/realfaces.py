"""The real-data study on realfaces-dev: teacher and students per source, with and without face crops, the
cross-source matrix and the robustness curves, in one resumable command.

Usage: python benchmarks/realfaces.py [--data ../shared/data/realfaces-dev] [--out runs/realfaces]
           [--sources stylegan_tpdne photoshop_ciplab] [--variants crop full] [--input-size 128]
           [--teacher-epochs 6] [--student-epochs 6] [--long-epochs 30] [--mixup 0.4] [--repeats 1]
           [--students NAME ...] [--face-model ../shared/models/face_detection_yunet.onnx]
           [--skip-cross-source] [--skip-robustness]

Skips with a message when the data folder is absent. Every step writes into ``--out`` and is skipped when its
outputs exist, so an interrupted run continues where it stopped (delete a run folder to redo it).

Steps:
1. ``crop-faces`` over the whole folder (YuNet when its file is present, else CenterFace), so both sources and
   both classes are framed alike: face size alone separates the stylegan_tpdne classes (README of the set).
2. Manifests: one split (7:2:1, stratified by source and label, seed 42) over both sources; the "crop" manifest
   holds the same rows with the cropped files (images without a face are dropped and counted), so the two variants
   are tested on the same images.
3. Per source and variant: teacher ``mobilenet_v2`` fine-tuned from the offline ImageNet weights; students
   ``resnet8_fast`` trained from scratch, chosen with ``--students`` (default: alone, KD from cached teacher logits,
   KD from the teacher run online on random crops, and function matching). The recipes:
   ``student`` alone; ``student_kd_cached`` (α 0.5, T 4); ``student_kd_online_crop`` (the same, random crops, teacher
   online); ``student_aug_long`` (random crops + mixup, ``--long-epochs``, no KD); ``student_kd_aug_long`` (that
   with KD α 0.5, the teacher scoring each mixed crop); ``student_fm`` (function matching: pure KD, α 1, T 1,
   crops + mixup, long); ``student_fm_at`` (that plus attention transfer from the teacher's feature maps,
   weight 500; ``student_fm_at_light``: weight 50);
   ``student_fm_x3`` (function matching with 3x the epochs; ``student_fm_at_light_x3`` with attention transfer);
   ``student_fm_x5_ema`` (5x the epochs, the final epoch's exponential moving average of the weights kept);
   ``student_fm_unlabeled`` (function matching plus the other source's faces as unlabelled images);
   ``student_fm_unlabeled_w2`` (that with the 2x-wide student); ``student_fm_unlabeled_x3`` (that with 3x the
   epochs). Test AUC / accuracy at the
   validation EER threshold and at 0.5, mean ± sd over ``--repeats`` seeds, or pooled over ``--folds K``
   cross-validation folds (every image tested once; the robustness study is then skipped).
4. Cross-source matrix of the no-KD student recipe (and of the teacher with ``--cross-source-teacher``) on the
   first variant.
5. Robustness (JPEG, blur, downscale, noise, brightness/contrast) of the no-KD student, the same recipe with
   ``data.augment=robust``, and the best student by validation AUC, on the first source and variant.

Small data (600 and 400 images, 60 and 40 test images per source): one test image is 1.7 and 2.5 points of
accuracy, so differences of a few points are noise. Nothing here is pretrained except the teacher's ImageNet
backbone. Writes ``summary.md`` and ``summary.json`` in ``--out`` and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "realfaces-dev"
DEFAULT_YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx"
SOURCES = ("stylegan_tpdne", "photoshop_ciplab")
logger = logging.getLogger("realfaces")


def recipes(args: argparse.Namespace) -> dict[str, list[str]]:
    """Config overrides of each trained model (the teacher's path is filled in later)."""
    size = args.input_size
    common = [
        f"data.resize_size={round(size * 8 / 7)}",  # the reference's 256/224 ratio
        f"data.input_size={size}",
        "data.batch_size=32",
        f"data.num_workers={args.num_workers}",
        "train.accelerator=cpu",
        "train.monitor=val_auc",
        "scheduler.name=cosine",
        f"train.seed={args.seed}",
    ]
    teacher = [*common, "model.name=mobilenet_v2", "model.pretrained=imagenet", "optim.lr=0.001"]
    teacher += [f"train.epochs={args.teacher_epochs}", f"train.patience={args.teacher_epochs}"]
    student = [*common, "model.name=resnet8_fast", "optim.lr=0.003"]
    student += [f"train.epochs={args.student_epochs}", f"train.patience={args.student_epochs}"]
    kd = ["distill.loss=kl", "distill.alpha=0.5", "distill.temperature=4.0", "distill.scale_by_t2=true"]
    # The long recipes: random crops + mixup for many epochs ("patient and consistent" function matching when the
    # teacher scores the same mixed crop; pure KD, alpha 1, with unlabelled faces of the other source added).
    long = [f"train.epochs={args.long_epochs}", f"train.patience={args.long_epochs}"]
    aug = ["data.augment=crop", f"data.mixup={args.mixup}", *long]
    fm_labelled = ["distill.loss=kl", "distill.alpha=1.0", "distill.temperature=1.0", *aug]
    fm = [*fm_labelled, UNLABELED]

    def patient(times: int) -> list[str]:  # after `long`: overrides it
        return [f"train.{k}={times * args.long_epochs}" for k in ("epochs", "patience")]

    # The final epoch's exponentially averaged weights (decay 0.995 per step: about the last 200 steps, 14 epochs).
    averaged = ["train.keep=last", "train.ema_decay=0.995"]

    def attention(weight: int) -> list[str]:
        return ["distill.feature_loss=attention", f"distill.feature_weight={weight}"]

    return {
        "teacher": teacher,
        "student": student,
        "student_kd_cached": [*student, *kd],
        "student_kd_online_crop": [*student, *kd, "data.augment=crop"],
        "student_aug_long": [*student, *aug],
        "student_kd_aug_long": [*student, *kd, *aug],
        "student_fm": [*student, *fm_labelled],
        "student_fm_unlabeled": [*student, *fm],
        "student_fm_unlabeled_w2": [*student, *fm, "model.name=resnet8_fast_w2"],
        # Attention transfer at the paper's weight (beta/2 = 500: its term ten times the soft loss here) and at 50.
        "student_fm_at": [*student, *fm_labelled, *attention(500)],
        "student_fm_at_light": [*student, *fm_labelled, *attention(50)],
        "student_fm_at_light_x3": [*student, *fm_labelled, *attention(50), *patient(3)],
        "student_fm_x3": [*student, *fm_labelled, *patient(3)],
        "student_fm_x5_ema": [*student, *fm_labelled, *patient(5), *averaged],
        "student_fm_unlabeled_x3": [*student, *fm, *patient(3)],
        "student_robust": [*student, "data.augment=robust"],
    }


UNLABELED = "<unlabeled>"  # replaced by the other sources' folders of the same variant
STUDENTS = (
    "student",
    "student_kd_cached",
    "student_kd_online_crop",
    "student_aug_long",
    "student_kd_aug_long",
    "student_fm",
    "student_fm_at",
    "student_fm_at_light",
    "student_fm_at_light_x3",
    "student_fm_x3",
    "student_fm_x5_ema",
    "student_fm_unlabeled",
    "student_fm_unlabeled_w2",
    "student_fm_unlabeled_x3",
)


def run_variant(args: argparse.Namespace, variant: str) -> str:
    """Folder name of a variant: ``full``, or ``crop_m<margin>`` (runs of different margins never mix)."""
    return variant if variant == "full" else f"crop_m{args.crop_margin:g}"


def crop_faces(args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, Any]]:
    """Face-cropped copy of the whole data folder (resumable)."""
    from dfkd.data.faces import crop_dataset

    face_model = args.face_model if args.face_model and Path(args.face_model).is_file() else None
    started = time.perf_counter()
    faces = out / f"faces_m{args.crop_margin:g}"
    report = crop_dataset(
        args.data, faces, margin=args.crop_margin, size=256, face_model=face_model, workers=args.crop_workers
    )
    info = {
        "margin": args.crop_margin,
        "n_overhang": report.n_overhang,
        "detector": report.detector,
        "n_images": report.n_images,
        "n_ok": report.n_ok,
        "n_no_face": report.n_no_face,
        "n_error": report.n_error,
        "seconds": round(time.perf_counter() - started, 1),
    }
    logger.info("crop-faces: %s", info)
    return faces, info


def build_manifests(args: argparse.Namespace, out: Path, faces: Path | None) -> dict[str, Path]:
    """The full-image manifest over both sources and, with ``faces``, the same rows pointing at the crops."""
    from dfkd.data import build_manifest, read_manifest, write_manifest
    from dfkd.data.scan import Sample

    manifests = {"full": out / "manifests" / "full.csv"}
    if not manifests["full"].exists():
        # Every source present, whatever --sources says: the split is seeded per (source, label), so it is the same
        # either way, and a later run with more sources reuses this manifest.
        roots = [args.data / s for s in SOURCES if (args.data / s).is_dir()]
        build_manifest(roots, manifests["full"], seed=42, verify=True)
    if faces is None:
        return manifests
    manifests["crop"] = out / "manifests" / f"{faces.name}.csv"
    if not manifests["crop"].exists():
        rows = []
        for sample in read_manifest(manifests["full"]).samples:
            cropped = faces / Path(sample.path).relative_to(args.data.resolve())
            if cropped.is_file():
                rows.append(Sample(str(cropped), sample.label, sample.split, sample.source, cropped.stat().st_size))
        write_manifest(manifests["crop"], rows, {"from": str(manifests["full"]), "faces": str(faces)})
    return manifests


def source_manifest(manifest: Path, source: str, out: Path) -> Path:
    """The rows of one source (all splits)."""
    from dfkd.data import read_manifest, write_manifest

    path = out / f"{manifest.stem}_{source}.csv"
    if not path.exists():
        samples = [s for s in read_manifest(manifest).samples if s.source == source]
        write_manifest(path, samples, {"from": str(manifest), "source": source})
    return path


def fold_manifests(manifest: Path, folds: int, out: Path, seed: int) -> list[Path]:
    """K-fold cross-validation manifests of one source: fold k is the test split, 10 % of the rest (stratified by
    label, seeded per fold) the validation split, the remainder the training split. Every image is tested once."""
    import random

    from dfkd.data import read_manifest, write_manifest
    from dfkd.data.scan import Sample

    samples = sorted(read_manifest(manifest).samples, key=lambda s: s.path)
    fold_of: dict[str, int] = {}
    for label in sorted({s.label for s in samples}):
        paths = [s.path for s in samples if s.label == label]
        random.Random(f"{seed}-{label}").shuffle(paths)
        fold_of.update({path: i % folds for i, path in enumerate(paths)})
    paths = []
    for k in range(folds):
        path = out / f"{manifest.stem}_fold{k}of{folds}.csv"
        paths.append(path)
        if path.exists():
            continue
        rest = [s for s in samples if fold_of[s.path] != k]
        val: set[str] = set()
        for label in sorted({s.label for s in rest}):
            members = [s.path for s in rest if s.label == label]
            random.Random(f"{seed}-{k}-{label}").shuffle(members)
            val.update(members[: max(1, round(0.1 * len(members)))])
        rows = [
            Sample(
                s.path,
                s.label,
                "test" if fold_of[s.path] == k else "val" if s.path in val else "train",
                s.source,
                s.size,
            )
            for s in samples
        ]
        write_manifest(path, rows, {"from": str(manifest), "fold": k, "folds": folds})
    return paths


def _test_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary-row fields of a test-split evaluation."""
    return {"test_auc": metrics["roc_auc"], "test_accuracy": metrics["accuracy"], "n_test": metrics["n"]}


def train_and_evaluate(
    overrides: list[str], manifest: Path, run: Path, threshold: str | float, reevaluate: bool = False
) -> dict[str, Any]:
    """Train (unless done) and evaluate on the test split; the run's summary row. ``reevaluate``: score a finished
    run again (after a change to evaluation) without retraining it."""
    from dfkd.config import load_config
    from dfkd.evaluate.evaluator import evaluate_model
    from dfkd.train import train

    done = run / "summary.json"
    if done.exists():
        row = json.loads(done.read_text())
        if reevaluate:
            metrics = evaluate_model(row["model"], manifest, run / "eval", threshold=threshold, num_workers=0)
            row.update(_test_fields(metrics))
            done.write_text(json.dumps(row, indent=2))
        return row
    config = load_config(None, [*overrides, f"data.manifest={manifest}"])
    started = time.perf_counter()
    result = train(config, run, resume=(run / "last.ckpt").exists(), overwrite=True)
    seconds = time.perf_counter() - started
    metrics = evaluate_model(result.model_path, manifest, run / "eval", threshold=threshold, num_workers=0)
    row = {
        "model": str(result.model_path),
        "val_auc": result.best_value,
        "best_epoch": result.best_epoch,
        **_test_fields(metrics),
        "teacher_val_auc": result.teacher_auc,
        "train_seconds": round(seconds, 1),
    }
    done.write_text(json.dumps(row, indent=2))
    logger.info("%s: test AUC %.4f accuracy %.4f (%.0f s)", run.name, row["test_auc"], row["test_accuracy"], seconds)
    return row


def per_source_study(
    args: argparse.Namespace, out: Path, manifests: dict[str, Path], roots: dict[str, Path]
) -> dict[str, Any]:
    """Teacher and the chosen students for every (source, variant); with ``--folds K`` on every fold, pooled."""
    results: dict[str, Any] = {}
    for variant in args.variants:
        for source in args.sources:
            manifest = source_manifest(manifests[variant], source, out / "manifests")
            base = out / "runs" / run_variant(args, variant) / source
            others = [str(roots[variant] / other) for other in SOURCES if other != source]
            if args.folds < 2:
                results[f"{variant}/{source}"] = _study(args, manifest, base, others)
                continue
            folds = fold_manifests(manifest, args.folds, out / "manifests", args.seed)
            per_fold = [_study(args, m, base / f"fold{k}of{args.folds}", others) for k, m in enumerate(folds)]
            results[f"{variant}/{source}"] = {name: _pooled([rows[name] for rows in per_fold]) for name in per_fold[0]}
    return results


def _study(args: argparse.Namespace, manifest: Path, base: Path, others: list[str]) -> dict[str, Any]:
    """The teacher and each student recipe on one manifest (each student over ``--repeats`` seeds)."""
    plans = recipes(args)
    teacher = train_and_evaluate(plans["teacher"], manifest, base / "teacher", args.threshold, args.reevaluate)
    rows = {"teacher": {**teacher, **_mean_row([teacher])}}
    for name in args.students:
        overrides = list(plans[name])
        if UNLABELED in overrides:
            overrides.remove(UNLABELED)
            overrides.append(f"data.unlabeled=[{', '.join(others)}]")
        if "distill.loss=kl" in overrides:
            overrides.append(f"teacher.model={teacher['model']}")
        n_seeds = 1 if name in args.one_seed else args.repeats
        runs = [base / (name if k == 0 else f"{name}_s{k}") for k in range(n_seeds)]
        seeds = [f"train.seed={args.seed + k}" for k in range(n_seeds)]
        pairs = zip(seeds, runs, strict=True)
        repeats = [
            train_and_evaluate([*overrides, seed], manifest, run, args.threshold, args.reevaluate)
            for seed, run in pairs
        ]
        rows[name] = {**repeats[0], **_mean_row(repeats)}
        if args.final_weights:
            finals = [final_weights(run, manifest, args.threshold) for run in runs]
            rows[f"{name}@last"] = {**finals[0], **_mean_row(finals)}
    if args.final_weights:
        final = final_weights(base / "teacher", manifest, args.threshold)
        rows = {"teacher": rows["teacher"], "teacher@last": {**final, **_mean_row([final])}, **rows}
    return rows


def final_weights(run: Path, manifest: Path, threshold: str | float) -> dict[str, Any]:
    """A finished run's final-epoch weights (``last.ckpt``: what ``train.keep=last`` keeps) as a model file in
    ``run/last_epoch``, evaluated like the run's best-epoch model; the summary row. With ``train.ema_decay`` these
    are the raw weights, which validation never scored (it scored the average), so their validation figures are
    left empty (NaN) rather than borrowed from the average."""
    import csv

    import yaml

    from dfkd.evaluate.evaluator import evaluate_model
    from dfkd.models import load_model, save_model
    from dfkd.train.checkpoint import checkpoint_weights

    target = run / "last_epoch"
    done = target / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    model, card = load_model(run / "model.safetensors")
    model.load_state_dict(checkpoint_weights(run / "last.ckpt"))
    with open(run / "metrics.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    if yaml.safe_load((run / "config.yaml").read_text())["train"].get("ema_decay"):
        last = {key: (value if key == "epoch" else "nan") for key, value in last.items()}
    metrics = {key: float(value) for key, value in last.items()}
    save_model(model, target / "model.safetensors", card.model_copy(update={"metrics": metrics}))
    metrics = evaluate_model(
        target / "model.safetensors", manifest, target / "eval", threshold=threshold, num_workers=0
    )
    previous = json.loads((run / "summary.json").read_text())
    row = {
        "model": str(target / "model.safetensors"),
        "val_auc": float(last["val_auc"]),
        "best_epoch": int(float(last["epoch"])),
        **_test_fields(metrics),
        "teacher_val_auc": previous.get("teacher_val_auc"),
        "train_seconds": previous["train_seconds"],
    }
    done.write_text(json.dumps(row, indent=2))
    return row


def _predictions(model: str) -> tuple[Any, Any]:
    """Labels (fake = 1) and fake probabilities of a run's test evaluation."""
    import csv

    import numpy as np

    run = Path(model).parent / "eval"
    with open(run / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([row["label"] == "fake" for row in rows], dtype=int)
    probs = np.array([float(row["fake_prob"]) for row in rows])
    return labels, probs


def _pooled(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the same recipe on every fold (its ``_mean_row`` fields per fold): accuracies over all folds'
    test images together (each image tested once, at each fold model's threshold), per training seed and then
    averaged over seeds; AUC as the mean of the folds' AUCs (scores of different models are not on one scale, so
    they are not ranked together); spreads over folds (of the seed means)."""
    import statistics

    n_test = sum(r["n_test"] for r in folds)

    def per_seed(key: str) -> list[float]:  # each seed's pooled accuracy: its correct images over all folds
        seeds = zip(*(r.get(f"{key}_all", [r[key]]) for r in folds), strict=True)
        return [sum(round(a * r["n_test"]) for a, r in zip(accs, folds, strict=True)) / n_test for accs in seeds]

    accuracy, at_half = per_seed("test_accuracy"), per_seed("test_accuracy_at_half")
    per_fold = [r["test_accuracy"] for r in folds]
    return {
        "model": folds[0]["model"],
        "n_seeds": folds[0].get("n_seeds", 1),
        "n_folds": len(folds),
        "test_accuracy_per_seed": accuracy,
        "val_auc": statistics.fmean(r["val_auc"] for r in folds),
        "test_auc": statistics.fmean(r["test_auc"] for r in folds),
        "test_auc_sd": _sd(r["test_auc"] for r in folds),
        "test_accuracy": statistics.fmean(accuracy),
        "test_accuracy_sd": _sd(per_fold),
        "test_accuracy_at_half": statistics.fmean(at_half),
        "test_accuracy_at_half_sd": _sd(r["test_accuracy_at_half"] for r in folds),
        "test_accuracy_all": per_fold,
        "n_test": n_test,
        "n_errors": round(n_test * (1.0 - statistics.fmean(accuracy)), 1),  # mean over seeds
        "train_seconds": statistics.fmean(r["train_seconds"] for r in folds),
    }


def cross_source_study(args: argparse.Namespace, out: Path, manifest: Path) -> dict[str, Any]:
    """Transfer matrices (student recipe; teacher recipe too with ``--cross-source-teacher``)."""
    from dfkd.config import load_config
    from dfkd.experiments.cross_source import run_cross_source

    plans = recipes(args)
    names = ["student", "teacher"] if args.cross_source_teacher else ["student"]
    results = {}
    for name in names:
        config = load_config(None, plans[name])
        target = out / "cross_source" / f"{run_variant(args, args.variants[0])}_{name}"
        results[name] = run_cross_source(manifest, config, target)
        results[name]["markdown"] = (target / "cross_source.md").read_text()
    return results


def robustness_study(args: argparse.Namespace, out: Path, manifests: dict[str, Path], per_source: dict) -> dict:
    """Robustness of the no-KD student, its ``robust``-augmented twin and the best student by validation AUC."""
    from dfkd.experiments.robustness import run_robustness

    variant, source = args.variants[0], args.sources[0]
    manifest = source_manifest(manifests[variant], source, out / "manifests")
    base = out / "runs" / run_variant(args, variant) / source
    robust = train_and_evaluate(recipes(args)["student_robust"], manifest, base / "student_robust", args.threshold)
    rows = per_source[f"{variant}/{source}"]
    best = max(args.students, key=lambda name: rows[name]["val_auc"])
    models = [rows["student"]["model"], robust["model"]]
    if best != "student":
        models.append(rows[best]["model"])
    target = out / "robustness" / f"{run_variant(args, variant)}_{source}"
    summary = run_robustness(models, manifest, target, num_workers=0)
    return {
        "variant": variant,
        "source": source,
        "best_student": best,
        "student_robust": robust,
        "results": summary["results"],
        "markdown": (target / "robustness.md").read_text(),
        "plot": str(target / "robustness.png"),
    }


def _sd(values: Any) -> float:
    """Sample standard deviation; 0 for one value, NaN when a value is missing (NaN)."""
    import statistics

    values = list(values)
    if any(math.isnan(v) for v in values):
        return math.nan
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_row(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and spreads over training seeds (the first run's model stays the row's model)."""
    import statistics

    row: dict[str, Any] = {"n_seeds": len(repeats)}
    for repeat in repeats:
        labels, probs = _predictions(repeat["model"])
        repeat["test_accuracy_at_half"] = float(((probs >= 0.5) == labels).mean())
    for key in ("val_auc", "test_auc", "test_accuracy", "test_accuracy_at_half", "train_seconds"):
        values = [r[key] for r in repeats]
        row[key] = statistics.fmean(values)
        row[f"{key}_all"] = values
        row[f"{key}_sd"] = _sd(values)
    return row


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def summary_markdown(args: argparse.Namespace, summary: dict[str, Any]) -> str:
    """The compact report printed at the end and written to ``summary.md``."""
    lines = ["# realfaces-dev results", ""]
    crop = summary.get("crop_faces")
    if crop:
        lines += [
            f"Face crops: {crop['detector']}, margin {crop['margin']:g}, {crop['n_ok']} of {crop['n_images']} images "
            f"cropped ({crop['n_overhang']} reach past the image border); "
            f"{crop['n_no_face']} without a face and {crop['n_error']} unreadable are left out of the crop variant.",
            "",
        ]
    lines += [
        f"Input {args.input_size} px; teacher mobilenet_v2 (ImageNet, offline weights) fine-tuned "
        f"{args.teacher_epochs} epochs; students resnet8_fast from scratch, {args.student_epochs} epochs. "
        f"Long recipes {args.long_epochs} epochs with random crops and mixup {args.mixup:g}. Test split; threshold "
        + (
            "at the validation EER point (stored in each model file, as `dfkd evaluate --threshold auto`). "
            if args.threshold == "auto"
            else f"{args.threshold}. "
        )
        + (
            f"{args.folds}-fold cross-validation per source: every image is tested once (fold k the test split, 10 % "
            "of the rest the validation split); accuracy over all folds' test images together, AUC the mean over "
            f"folds, ± sd over folds; students: {args.repeats} seed(s) (accuracy the mean over seeds; each seed's "
            "pooled accuracy in summary.json as test_accuracy_per_seed). "
            if args.folds > 1
            else "Students: mean ± sd over "
            f"{args.repeats} training seed(s) (one seed: {', '.join(args.one_seed) or 'none'}). "
        )
        + "Accuracy also at the fixed threshold 0.5. Small test sets: a few points are noise.",
        "",
        "| variant | source | model | val AUC | test AUC | test accuracy % | Δ accuracy vs teacher | accuracy % at 0.5 "
        "| Δ at 0.5 | n test | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in summary["per_source"].items():
        variant, source = key.split("/")
        teacher = rows["teacher"]
        for name, row in rows.items():
            spread = row.get("n_seeds", 1) > 1 or row.get("n_folds", 1) > 1
            auc = _num(row["test_auc"]) + (f" ± {row['test_auc_sd']:.3f}" if spread else "")
            cells = []
            for key in ("test_accuracy", "test_accuracy_at_half"):
                cells.append(_pct(row[key]) + (f" ± {100 * row[f'{key}_sd']:.1f}" if spread else ""))
                cells.append("–" if name == "teacher" else f"{100 * (row[key] - teacher[key]):+.1f}")
            lines.append(
                f"| {variant} | {source} | {name} | {_num(row['val_auc'])} | {auc} | {' | '.join(cells)} | "
                f"{row['n_test']} | {row['train_seconds']:.0f} |"
            )
    for name, result in (summary.get("cross_source") or {}).items():
        lines += [
            "",
            f"## Cross-source ({name} recipe, {summary['cross_source_variant']} images)",
            "",
            result["markdown"],
        ]
    robustness = summary.get("robustness")
    if robustness:
        lines += [
            "",
            f"## Robustness ({robustness['variant']} / {robustness['source']}; best student by val AUC: "
            f"{robustness['best_student']})",
            "",
            robustness["markdown"],
            f"Plot: `{robustness['plot']}`",
        ]
    lines += ["", f"Total time: {summary['seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "realfaces")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES))
    parser.add_argument("--variants", nargs="+", default=["crop", "full"], choices=["crop", "full"])
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--student-epochs", type=int, default=6)
    parser.add_argument("--long-epochs", type=int, default=30, help="Epochs of the *_long and *_fm_* recipes.")
    parser.add_argument("--mixup", type=float, default=0.4, help="Mixup Beta(a, a) of the long recipes.")
    parser.add_argument(
        "--students",
        nargs="+",
        default=["student", "student_kd_cached", "student_kd_online_crop", "student_fm_unlabeled"],
        choices=list(STUDENTS),
    )
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--crop-workers", type=int, default=1)
    parser.add_argument(
        "--crop-margin",
        type=float,
        default=0.0,
        help="Face-box margin of the crops. 0: the face box alone, framed alike in both classes. With 0.3 (the "
        "inference default) most faces in these tight 256 px photos do not fit with their margin, so the crop "
        "shrinks to the whole image for large faces and keeps part of the framing cue the crops are meant to remove.",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threshold", default="auto", help="auto: each model's validation-EER point (as dfkd evaluate); or a number."
    )
    parser.add_argument("--repeats", type=int, default=1, help="Train each student with this many seeds (mean ± sd).")
    parser.add_argument(
        "--folds", type=int, default=0, help="K-fold cross-validation per source (K ≥ 2): every image tested once."
    )
    parser.add_argument(
        "--final-weights",
        action="store_true",
        help="Also score each run's final-epoch weights (rows NAME@last; what train.keep=last keeps), no training.",
    )
    parser.add_argument(
        "--reevaluate", action="store_true", help="Score finished runs again (after an evaluation change), no training."
    )
    parser.add_argument("--one-seed", nargs="*", default=[], help="Students trained with one seed whatever --repeats.")
    parser.add_argument("--face-model", type=Path, default=DEFAULT_YUNET)
    parser.add_argument("--skip-cross-source", action="store_true")
    parser.add_argument("--cross-source-teacher", action="store_true", help="Also the teacher recipe's matrix.")
    parser.add_argument("--skip-robustness", action="store_true")
    args = parser.parse_args()
    if args.threshold != "auto":
        args.threshold = float(args.threshold)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.data.is_dir():
        print(f"skipped: the realfaces-dev folder {args.data} is absent (see its README for what it holds)")
        return 0
    args.data = args.data.resolve()
    missing = [s for s in args.sources if not (args.data / s).is_dir()]
    if missing:
        print(f"skipped: {args.data} has no source folder {', '.join(missing)}")
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    faces = None
    if "crop" in args.variants:
        faces, summary["crop_faces"] = crop_faces(args, out)
    manifests = build_manifests(args, out, faces)
    roots = {"full": args.data, "crop": faces}
    summary["per_source"] = per_source_study(args, out, manifests, roots)
    if not args.skip_cross_source and len(args.sources) > 1:
        summary["cross_source_variant"] = args.variants[0]
        summary["cross_source"] = cross_source_study(args, out, manifests[args.variants[0]])
    if not args.skip_robustness and args.folds > 1:
        logger.info("--folds: the robustness study (one split) is skipped; run it without --folds")
    elif not args.skip_robustness:
        summary["robustness"] = robustness_study(args, out, manifests, summary["per_source"])
    summary["seconds"] = time.perf_counter() - started
    text = summary_markdown(args, summary)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(text)
    print(f"written to {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
