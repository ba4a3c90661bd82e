"""Generalisation to fakes nobody trained on: leave-one-source-out on realfaces-dev, with self-blended fakes.

    python benchmarks/generalisation.py --data ../shared/data/realfaces-dev --out runs/generalisation \
        [--face-model ../shared/models/face_detection_yunet.onnx] [--held-out inswapper_ffhq photoshop_ciplab] \
        [--teacher-epochs 8] [--student-epochs 40] [--students] [--teacher-seeds 42 1 2] [--baseline] \
        [--reals-only] [--held-out-fakes-only] [--sbi-cost] \
        [--bundle src/dfkd/pretrained/general_resnet8_fast.safetensors] [--margin 0.0] [--outline] \
        [--untrained-fakes SOURCE ...] [--set key=value ...] [--teacher-set key=value ...] [--student-set key=value ...]

1. ``dfkd crop-faces`` of every source (``--margin``, default 0; 256 px; YuNet with --face-model, else the wheel
   detector), which also records each face's five landmarks; with ``--outline`` ``dfkd face-outlines`` adds
   MediaPipe's face outline to them (the self-blending mask's face region); one manifest over the sources (7:2:1 per
   source and class).
2. Per held-out source X: X's images all become the test split (never trained on: neither its reals nor its fakes);
   the other sources keep their splits. The teacher (``configs/general_teacher_sbi.yaml``: MobileNetV2, ImageNet,
   reals + labelled fakes + self-blended fakes) is trained on the rest, its threshold set on the validation split by
   the recipe's ``train.threshold`` (``fpr=0.05``: at most 5 % of validation reals called fake); with ``--students`` a
   resnet8_fast is distilled from it online (``configs/general_student_sbi_fm.yaml``). Reported per test source: AUC,
   and for X the false-positive rate on its reals and the share of its fakes caught, at the card's threshold.
   ``--held-out-fakes-only``: only X's fakes are held out; X's training reals stay in training, its validation and
   test reals are tested (a user with genuine photos of a collection but no example of its manipulations);
   ``--also-fakes-only``: both kinds of fold for each source.
   ``--baseline``: the same teacher without self-blended fakes. ``--teacher-seeds S1 S2 …``: the teacher trained
   once per seed and the runs joined by ``dfkd ensemble`` (the mean of their logits, its threshold set by the same
   policy on the validation split, in reals-only folds too), which is scored and teaches the student; this holds for
   every fold and the bundle.
3. ``--reals-only``: per held-out source (or over all sources without --held-out), a teacher (and with --students a
   student) trained on the reals + self-blended fakes only (no labelled fake at all); the threshold the trainer chose
   on its validation split (self-blended fakes count) by the same policy.
4. ``--bundle PATH``: the general detector dfkd ships — the same recipe on every source (teacher, then the student),
   its card stating the unseen-source AUC and false-positive rate each held-out run measured (with
   ``--also-fakes-only`` also each fakes-only run's), its blind spots and this command.
5. ``--sbi-cost``: the time self-blending adds to making a training batch, as a share of a student step.

Writes ``OUT/generalisation.json`` and ``OUT/generalisation.md``. Finished runs are reused when asked for with the
same settings (and refused, naming what differs, when not); a ``--student-set`` student gets its own folder and
results row, so several students of one teacher can be run in one ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

SOURCES = ("stylegan_tpdne", "photoshop_ciplab", "inswapper_ffhq")


def crop_and_scan(
    data: Path, out: Path, face_model: str | None, margin: float = 0.0, outline: bool = False, align: bool = False
) -> Path:
    """Face crops of every source (landmarks recorded; with ``outline`` MediaPipe's face outlines added; with
    ``align`` every face turned and scaled onto the mean face) and one manifest over them."""
    from dfkd.data import build_manifest
    from dfkd.data.faces import add_face_outlines, crop_dataset

    faces = out / "faces"
    # Always asked: it resumes (crops made before are kept) and refuses crops made with another margin or alignment.
    detector = "yunet" if face_model else "auto"
    crop_dataset(data, faces, margin=margin, size=256, face_model=face_model, detector=detector, align=align)
    if outline:  # resumable: crops outlined by an earlier run are kept
        add_face_outlines(faces)
    manifest = out / "all.csv"
    if not manifest.is_file():
        build_manifest([faces / source for source in SOURCES if (faces / source).is_dir()], manifest)
    return manifest


def held_out_manifest(
    manifest: Path,
    held_out: str | None,
    out: Path,
    *,
    reals_only: bool = False,
    fakes_only: bool = False,
    untrained_fakes: tuple[str, ...] = (),
) -> Path:
    """A copy of ``manifest`` where ``held_out``'s images are all test images (and, with ``reals_only``, no labelled
    fake is trained or validated on).

    With ``fakes_only`` only its fakes are held out: its training reals stay in training (and are self-blended like
    any real), its validation and test reals are tested with all its fakes. A user with genuine photos of their own
    collection but no example of its manipulations is in this case. ``untrained_fakes``: those sources' labelled
    fakes are neither trained nor validated on (their test split stays), their reals are used as usual."""
    from dfkd.data.manifest import read_manifest, read_sidecar, write_manifest
    from dfkd.data.scan import Sample

    path = out / "manifest.csv"
    if path.is_file():
        made_with = read_sidecar(path).get("untrained_fakes", [])
        if sorted(made_with) != sorted(untrained_fakes):
            raise SystemExit(f"{path} was made with --untrained-fakes {made_with or 'none'}: give another --out")
        return path
    rows = []
    for sample in read_manifest(manifest).samples:
        split = sample.split
        if sample.source == held_out and not (fakes_only and sample.label == "real" and split == "train"):
            split = "test"
        elif (reals_only or sample.source in untrained_fakes) and sample.label == "fake" and split != "test":
            continue
        rows.append(Sample(sample.path, sample.label, split, sample.source, sample.size))
    out.mkdir(parents=True, exist_ok=True)
    parent = read_sidecar(manifest)  # the roots (landmarks) and the crop settings (the card's face crop) travel along
    info = {key: parent[key] for key in ("roots", "face_crop", "face_crop_warnings") if key in parent}
    write_manifest(path, rows, {**info, "held_out": held_out, "untrained_fakes": list(untrained_fakes)})
    return path


def recipe(config: str, overrides: list[str], manifest: Path):
    """A preset's settings for this fold's manifest with ``overrides``."""
    from dfkd.config import load_config
    from dfkd.configs import resolve_config

    return load_config(resolve_config(config), [f"data.manifest={manifest}", *overrides])


def train_once(config: str, overrides: list[str], run: Path, manifest: Path, *, threshold: bool = True) -> Path:
    """Train (unless finished with the same settings) and set the threshold on the validation split by the recipe's
    policy; the model file.

    The "done" marker holds the settings the run was trained with; a finished run asked for with other settings is
    refused (naming them) instead of being reported as theirs. Markers written before it held them ("ok") are trusted.
    """
    from pydantic import ValidationError

    from dfkd.config import RunConfig, differing_keys
    from dfkd.evaluate.evaluator import set_threshold
    from dfkd.train import train

    model, marker = run / "model.safetensors", run / "done"
    settings = recipe(config, overrides, manifest)
    wanted = settings.model_dump(mode="json")
    if marker.is_file():
        done = marker.read_text()
        try:  # read back through the settings schema: a setting added since the run takes its default, as it ran
            finished = None if done == "ok" else RunConfig.model_validate(json.loads(done)).model_dump(mode="json")
        except ValidationError as error:
            raise SystemExit(f"{run} was trained with settings dfkd no longer takes: {error}") from None
        changed = [] if finished is None else differing_keys(finished, wanted)
        if changed:
            raise SystemExit(f"{run} was trained with other {', '.join(changed)}: give another --out or --student-set")
        return model
    # an unfinished run (no "done" marker) is trained again from the start
    train(settings, run, overwrite=True)
    if threshold:  # on the whole validation split of the kept weights, by the recipe's policy
        set_threshold(model, manifest, settings.train.threshold)
    marker.write_text(json.dumps(wanted, sort_keys=True))
    return model


def student_run_name(student_overrides: list[str]) -> str:
    """The student's run folder in a fold: ``student``, or for ``--student-set`` settings a name that spells them, so
    students of one teacher with different settings sit side by side instead of one being reused for another."""
    if not student_overrides:
        return "student"
    return "student_" + re.sub(r"[^A-Za-z0-9.=_-]+", "-", "_".join(student_overrides))


def train_teacher(
    fold: Path, manifest: Path, overrides: list[str], seeds: list[int], *, threshold: bool = True
) -> Path:
    """The recipe's teacher for this fold: one run, or with several ``seeds`` one run per seed joined by
    ``dfkd ensemble`` (the mean of their logits).

    A single teacher of a reals-only fold (``threshold=False``) keeps the threshold its trainer chose on validation
    reals and self-blended fakes; an ensemble has no trainer, so its threshold is always set by the recipe's policy
    on the validation split (a cap on false positives needs its reals only)."""
    if len(seeds) <= 1:
        extra = [f"train.seed={seeds[0]}"] if seeds else []
        return train_once("general_teacher_sbi", [*overrides, *extra], fold / "teacher", manifest, threshold=threshold)
    from dfkd.evaluate.evaluator import set_threshold
    from dfkd.models import save_model
    from dfkd.models.ensemble import build_ensemble

    runs = [(f"train.seed={seed}", fold / f"teacher_seed{seed}") for seed in seeds]
    members = [
        train_once("general_teacher_sbi", [*overrides, seed], run, manifest, threshold=False) for seed, run in runs
    ]
    path = fold / f"teacher_ensemble_{'_'.join(map(str, seeds))}.safetensors"
    if not path.is_file():  # written under its name only once thresholded: a reused file always has its threshold
        partial = path.with_name(f".{path.name}.partial")
        model, card = build_ensemble(members)
        save_model(model, partial, card)
        set_threshold(partial, manifest, recipe("general_teacher_sbi", overrides, manifest).train.threshold)
        partial.replace(path)
    return path


def score(model: Path, manifest: Path, held_out: str | None) -> dict:
    """AUC per source on the test split, and the held-out source's false-positive rate at the card's threshold."""
    from dfkd.data.manifest import read_manifest
    from dfkd.evaluate.evaluator import predict_split
    from dfkd.models import load_model

    net, card = load_model(model)
    predictions = predict_split(net, read_manifest(manifest), "test", card.preprocessing, num_workers=2)
    sources = np.asarray(predictions.sources)
    row: dict = {"threshold": card.threshold, "threshold_source": card.threshold_source, "sources": {}}
    for source in sorted(set(sources)):
        keep = sources == source
        labels, probs = predictions.labels[keep], predictions.fake_probs[keep]
        cell = {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum())}
        cell["auc"] = float(roc_auc_score(labels, probs)) if len(set(labels)) == 2 else None
        cell["fpr"] = float((probs[labels == 0] >= card.threshold).mean()) if (labels == 0).any() else None
        cell["tpr"] = float((probs[labels == 1] >= card.threshold).mean()) if (labels == 1).any() else None
        cell["mean_real"] = float(probs[labels == 0].mean()) if (labels == 0).any() else None  # mean p(fake)
        cell["mean_fake"] = float(probs[labels == 1].mean()) if (labels == 1).any() else None
        cell["unseen"] = source == held_out
        row["sources"][source] = cell
    return row


def measure_sbi_cost(manifest: Path, repeats: int = 5) -> dict:
    """Seconds to make a batch of 32 training items with and without self-blending, and one student step."""
    import torch

    from dfkd.config import load_config
    from dfkd.configs import resolve_config
    from dfkd.data.blend import SelfBlendedDataset, manifest_landmarks
    from dfkd.data.dataset import ManifestDataset
    from dfkd.data.manifest import read_manifest
    from dfkd.data.transforms import build_train_transform
    from dfkd.models import create_model

    # One thread: on a shared 2-core machine two torch threads competing with another process slowed a step ~40x
    # (OpenMP spin-waits), which would hide the blend's cost behind noise. The loader does its blending in worker
    # processes, one image after another, so one thread is also how it runs.
    torch.set_num_threads(1)
    config = load_config(resolve_config("general_student_sbi_fm"), [f"data.manifest={manifest}"])
    view = {"resize_size": config.data.resize_size, "input_size": config.data.input_size}
    read = read_manifest(manifest)
    base = ManifestDataset(read, "train", build_train_transform(**view, augment="quality"))
    blended = SelfBlendedDataset(base, manifest_landmarks(read), share=1.0, blend_size=view["resize_size"])
    reals = [i for i, sample in enumerate(base.samples) if sample.label == "real"][:32]
    model = create_model("resnet8_fast").to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    images = torch.stack([base[i][0] for i in reals]).contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(len(reals))
    timings: dict[str, list[float]] = {"batch_plain": [], "batch_sbi": [], "student_step": []}
    for _ in range(repeats):  # interleaved, so drifting machine load hits all three alike
        started = time.perf_counter()
        for i in reals:
            base[i]
        timings["batch_plain"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for i in reals:
            blended[i]
        timings["batch_sbi"].append(time.perf_counter() - started)
        started = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings["student_step"].append(time.perf_counter() - started)
    medians = {key: float(np.median(values)) for key, values in timings.items()}
    extra = medians["batch_sbi"] - medians["batch_plain"]
    # With the recipe's share, only that share of the reals is blended: the expected extra per mixed batch.
    real_share = float(np.mean([sample.label == "real" for sample in base.samples]))
    blended_share = config.data.synthetic_share * real_share
    return {
        **medians,
        "sbi_extra_per_batch": extra,
        # what a step costs end to end when one core makes the batch and the other trains (the loader's work is
        # part of the step's wall time only when it is slower than the model)
        "sbi_extra_over_step_plus_batch": extra / (medians["student_step"] + medians["batch_plain"]),
        "recipe_blended_share": blended_share,
        "recipe_extra_over_step_plus_batch": extra * blended_share / (medians["student_step"] + medians["batch_plain"]),
        "n_images": len(reals),
        "all_reals_blended": True,
        "torch_threads": 1,
    }


def data_description(manifest: Path) -> str:
    """What a manifest trains on, counted: ``"train+val: stylegan_tpdne 420 real / 420 fake, …"``."""
    from collections import Counter

    from dfkd.data.manifest import read_manifest

    counts = Counter((s.source, s.label) for s in read_manifest(manifest).samples if s.split in ("train", "val"))
    sources = sorted({source for source, _ in counts})
    parts = [f"{source} {counts[source, 'real']} real / {counts[source, 'fake']} fake" for source in sources]
    return "train + validation: " + ", ".join(parts) + "; plus self-blended fakes of the reals"


def bundle(
    manifest: Path,
    out: Path,
    target: Path,
    results: dict,
    teacher_epochs: list,
    student_epochs: list,
    command: str,
    face_model: str | None,
    teacher_seeds: list[int],
    student_run: str,
    row_labels: dict[str, str],
) -> None:
    """Train the general detector on every source (reals, labelled fakes, self-blended fakes), distil the student,
    and write it to ``target`` with a card that states what the leave-one-source-out runs measured."""
    from dfkd.card import FaceCrop, TrainingSummary
    from dfkd.data.manifest import read_sidecar
    from dfkd.models import read_model_card, update_card

    fold = out / "bundle"
    fold_manifest = held_out_manifest(manifest, None, fold)
    teacher = train_teacher(fold, fold_manifest, teacher_epochs, teacher_seeds)
    student = train_once(
        "general_student_sbi_fm", [*student_epochs, f"teacher.model={teacher}"], fold / student_run, fold_manifest
    )
    results["runs"]["bundled student, all sources"] = {
        "held_out": None,
        "model": str(student),
        **score(student, fold_manifest, None),
    }
    unseen = unseen_figures(results["runs"], row_labels)
    unseen_fakes = unseen_figures(results["runs"], row_labels, fakes_only=True)
    card = read_model_card(student)
    bundled = results["runs"]["bundled student, all sources"]["sources"]
    # runs made before the fix lacked it
    face_crop = FaceCrop.model_validate(card.face_crop or read_sidecar(manifest).get("face_crop"))
    training = card.training.model_dump() if card.training else {}
    # Manifests scanned before the fix repeated a crop folder's warnings once per source in it.
    training["face_crop_warnings"] = list(dict.fromkeys(training.get("face_crop_warnings") or []))
    summary = {
        **training,
        "manifest": "realfaces-dev (stylegan_tpdne, photoshop_ciplab, inswapper_ffhq), face crops: "
        + face_crop.describe(),
        "data": data_description(fold_manifest),
        "generalisation": {
            "protocol": "leave one source out: the same recipe trained without that source (neither its reals nor "
            "its fakes), tested on all of it; false-positive rate on its reals at that model's threshold (chosen on "
            "its validation split by the recipe's policy)",
            "unseen_source": unseen,
            **(
                {
                    "unseen_fakes_protocol": "the same recipe trained on every source's training reals but without "
                    "that source's fakes (its genuine photos known, its manipulations not), tested on its fakes and "
                    "its validation and test reals",
                    "unseen_fakes": unseen_fakes,
                }
                if unseen_fakes
                else {}
            ),
            "test_split_auc": {source: cell["auc"] for source, cell in bundled.items()},
        },
        "blind_spots": [
            "whole-image GAN faces of generators it has not seen (self-blending teaches blending boundaries, not GAN "
            "fingerprints)",
            *(
                f"real photos of collections it never saw: trained without {source}, the recipe called "
                f"{100 * cell['fpr_on_reals']:.0f} % of that source's reals fake"
                + known_reals_fpr(unseen_fakes.get(source))
                + "; `dfkd calibrate` on genuine photos of the collection to check sets a threshold for it, and "
                "`dfkd adapt` fine-tunes the model on them"
                for source, cell in unseen.items()
                if cell["fpr_on_reals"] is not None and cell["fpr_on_reals"] > 0.1
            ),
            "aligned, FFHQ-style real portraits especially: the labelled StyleGAN2 fakes are such portraits, and with "
            "them in training far more unseen aligned reals were called fake than without them "
            "(docs/results/generalisation.md)",
            *(
                f"{source} fakes: AUC {cell['auc']:.2f} on its own test split"
                for source, cell in bundled.items()
                if cell["auc"] is not None and cell["auc"] < 0.8
            ),
            "faces much smaller than about 100 px in the photo, non-frontal faces, heavy occlusion",
            "face crops by another detector than YuNet (its model file does not ship; without --face-model dfkd crops "
            "with CenterFace): the AUCs hold, but single scores move and images near the threshold can change label "
            "(benchmarks/bundled_face_crops.py)",
            "recompressed photos: one more JPEG save pushes genuine photos towards fake, and more of them over the "
            "threshold (benchmarks/bundled_face_crops.py)",
            "trained on the real photos of a few collections (counted under data): the false-positive rate on other "
            "cameras is not measured beyond the held-out sources",
        ],
        "retrain": command,
    }
    fields = {"training": TrainingSummary.model_validate(summary), "face_crop": face_crop}
    update_card(student, card.model_copy(update=fields))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(student.read_bytes())
    # A real photo no one trained on (scikit-image's astronaut portrait), scored as `dfkd detect` would.
    from skimage import data as skdata

    from dfkd.inference.detector import Detector

    scored = Detector.load(target, face_model=face_model).predict([skdata.astronaut()])[0]
    results["bundle_astronaut"] = {key: scored[key] for key in ("status", "fake_prob", "label", "threshold")}


def known_reals_fpr(cell: dict | None) -> str:
    """The false-positive rate measured with the collection's genuine photos in training, as a clause, or nothing."""
    if cell is None or cell["fpr_on_reals"] is None:
        return ""
    return f" ({100 * cell['fpr_on_reals']:.0f} % when its genuine photos, not its fakes, were in training)"


def unseen_figures(runs: dict, row_labels: dict[str, str], *, fakes_only: bool = False) -> dict:
    """Per held-out source, what this recipe's rows measured on it: AUC, false-positive rate on its reals, threshold.

    Only the recipe's own rows count (``row_labels``: the teacher's and the student's row names, which carry its
    seeds and student settings), not other runs recorded in the same OUT; the student's figure wins where both
    were measured. ``fakes_only``: the "no X fakes" rows (X's training reals trained on) instead of the "no X" ones.
    """
    suffix, trained_without = (" fakes", "this source's fakes") if fakes_only else ("", "this source")
    unseen: dict = {}
    for kind in ("teacher", "student"):
        for name, row in runs.items():
            if row["held_out"] and name == f"{row_labels[kind]}, no {row['held_out']}{suffix}":
                cell = row["sources"][row["held_out"]]
                unseen[row["held_out"]] = {
                    "auc": cell["auc"],
                    "fpr_on_reals": cell["fpr"],
                    "threshold": row["threshold"],
                    "measured_with": f"the recipe's {kind}, trained without {trained_without}",
                }
    return unseen


def markdown(results: dict) -> str:
    lines = [
        "| run | held out | "
        + " | ".join(f"{s} AUC" for s in SOURCES)
        + " | FPR on unseen reals | unseen fakes caught | threshold |"
    ]
    lines.append("|---" * (len(SOURCES) + 5) + "|")
    for name, row in results["runs"].items():
        cells = []
        for source in SOURCES:
            cell = row["sources"].get(source)
            if cell is None or cell["auc"] is None:
                cells.append("–")
            else:
                cells.append(f"{cell['auc']:.3f}" + (" (unseen)" if cell["unseen"] else ""))
        unseen = [cell for cell in row["sources"].values() if cell["unseen"]]
        fpr = f"{100 * unseen[0]['fpr']:.1f} %" if unseen and unseen[0]["fpr"] is not None else "–"
        caught = f"{100 * unseen[0]['tpr']:.0f} %" if unseen and unseen[0].get("tpr") is not None else "–"
        threshold = f"{row['threshold']:.3f}" if row.get("threshold_source") else "–"
        lines.append(
            f"| {name} | {row['held_out'] or '–'} | " + " | ".join(cells) + f" | {fpr} | {caught} | {threshold} |"
        )
    if "bundle_astronaut" in results:
        scored = results["bundle_astronaut"]
        lines.append("")
        lines.append(
            f"The bundled detector on scikit-image's astronaut photo (a real portrait): fake_prob "
            f"{scored['fake_prob']:.3f} against its threshold {scored['threshold']:.3f}: {scored['label']}."
        )
    if "sbi_cost" in results:
        cost = results["sbi_cost"]
        lines.append("")
        lines.append(
            f"Self-blending a batch of {cost['n_images']} reals adds {1000 * cost['sbi_extra_per_batch']:.0f} ms "
            f"(plain batch {1000 * cost['batch_plain']:.0f} ms, student step {1000 * cost['student_step']:.0f} ms): "
            f"{100 * cost['sbi_extra_over_step_plus_batch']:.0f} % of a student step with its batch when every image "
            f"is blended; at the recipe's share ({100 * cost['recipe_blended_share']:.0f} % of a batch blended) "
            f"{100 * cost['recipe_extra_over_step_plus_batch']:.0f} %."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--face-model", default=None)
    parser.add_argument("--held-out", nargs="*", default=["inswapper_ffhq", "photoshop_ciplab"])
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--student-epochs", type=int, default=40)
    parser.add_argument("--students", action="store_true", help="Distil a student from each held-out teacher.")
    parser.add_argument(
        "--teacher-seeds",
        type=int,
        nargs="*",
        default=[],
        help="Train the teacher once per seed and teach with their ensemble (dfkd ensemble); default: one, train.seed.",
    )
    parser.add_argument("--baseline", action="store_true", help="Also the teachers without self-blended fakes.")
    parser.add_argument("--reals-only", action="store_true", help="Also teachers on reals + self-blended fakes only.")
    parser.add_argument("--reals-only-only", action="store_true", help="Only the reals + self-blended fakes runs.")
    parser.add_argument(
        "--held-out-fakes-only",
        action="store_true",
        help="Hold out only the fakes of each --held-out source: its training reals are trained on, its other reals "
        "are tested with its fakes (folds and rows named '… fakes').",
    )
    parser.add_argument(
        "--also-fakes-only",
        action="store_true",
        help="Run each --held-out fold twice: the whole source held out, and only its fakes (as "
        "--held-out-fakes-only); with --bundle the card states both.",
    )
    parser.add_argument("--sbi-cost", action="store_true")
    parser.add_argument("--bundle", type=Path, default=None, help="Train on every source and write the student here.")
    parser.add_argument("--margin", type=float, default=0.0, help="Face-crop margin (each side, share of the box).")
    parser.add_argument(
        "--outline", action="store_true", help="Self-blending masks from MediaPipe's face outline (dfkd face-outlines)."
    )
    parser.add_argument(
        "--align",
        action="store_true",
        help="Aligned face crops (dfkd crop-faces --align): every face turned and scaled onto one mean face.",
    )
    parser.add_argument(
        "--set", dest="overrides", nargs="*", default=[], help="key=value settings for every teacher and student."
    )
    parser.add_argument(
        "--untrained-fakes",
        nargs="*",
        default=[],
        metavar="SOURCE",
        help="In the held-out folds, these sources' labelled fakes are not trained on (their test split is scored).",
    )
    parser.add_argument(
        "--teacher-set",
        dest="teacher_overrides",
        nargs="*",
        default=[],
        help="key=value settings for the teachers only (e.g. optim.backbone_lr_scale=0.1), after --set.",
    )
    parser.add_argument(
        "--student-set",
        dest="student_overrides",
        nargs="*",
        default=[],
        help="key=value settings for the students only (e.g. distill.feature_loss=attention), after --set.",
    )
    args = parser.parse_args()
    if args.bundle is not None and args.held_out_fakes_only:
        # the card states how the recipe detects sources it never saw at all; "no X fakes" rows would not answer that
        parser.error("--bundle quotes whole held-out sources: use --also-fakes-only, not --held-out-fakes-only")
    if args.held_out_fakes_only and args.also_fakes_only:
        parser.error("--held-out-fakes-only runs the fakes-only folds alone; --also-fakes-only adds them: pick one")

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = crop_and_scan(args.data, args.out, args.face_model, args.margin, args.outline, args.align)
    teacher_epochs = [f"train.epochs={args.teacher_epochs}", f"train.patience={args.teacher_epochs}", *args.overrides]
    teacher_epochs += args.teacher_overrides
    student_epochs = [f"train.epochs={args.student_epochs}", f"train.patience={args.student_epochs}", *args.overrides]
    student_epochs += args.student_overrides
    results_path = args.out / "generalisation.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    ensemble_label = (
        f" (ensemble of seeds {', '.join(map(str, args.teacher_seeds))})" if len(args.teacher_seeds) > 1 else ""
    )
    student_run = student_run_name(args.student_overrides)
    # the student's settings in its row's name, so that rows of one teacher's students do not overwrite each other
    student_label = ensemble_label + (f" [{' '.join(args.student_overrides)}]" if args.student_overrides else "")

    def record(name: str, model: Path, fold_manifest: Path, held_out: str | None) -> None:
        results["runs"][name] = {"held_out": held_out, "model": str(model), **score(model, fold_manifest, held_out)}
        results_path.write_text(json.dumps(results, indent=2))
        print(markdown(results), flush=True)

    # "no X": all of X held out; "no X fakes": only its fakes (--held-out-fakes-only, or both with --also-fakes-only)
    fakes_only_modes = [True] if args.held_out_fakes_only else [False, True] if args.also_fakes_only else [False]
    folds = [(source, fakes_only) for fakes_only in fakes_only_modes for source in args.held_out]
    for held_out, fakes_only in [] if args.reals_only_only else folds:
        unseen_part, fold_part = (" fakes", "_fakes") if fakes_only else ("", "")
        fold = args.out / f"without_{held_out}{fold_part}"
        fold_manifest = held_out_manifest(
            manifest, held_out, fold, fakes_only=fakes_only, untrained_fakes=tuple(args.untrained_fakes)
        )
        teacher = train_teacher(fold, fold_manifest, teacher_epochs, args.teacher_seeds)
        record(f"teacher{ensemble_label}, no {held_out}{unseen_part}", teacher, fold_manifest, held_out)
        if args.baseline:
            plain = train_once(
                "general_teacher_sbi", [*teacher_epochs, "data.synthetic_fakes=none"], fold / "plain", fold_manifest
            )
            record(f"teacher without SBI, no {held_out}{unseen_part}", plain, fold_manifest, held_out)
        if args.students:
            student = train_once(
                "general_student_sbi_fm",
                [*student_epochs, f"teacher.model={teacher}"],
                fold / student_run,
                fold_manifest,
            )
            record(f"student{student_label}, no {held_out}{unseen_part}", student, fold_manifest, held_out)
    for held_out, fakes_only in (folds or [(None, False)]) if args.reals_only else []:
        unseen_part, fold_part = (" fakes", "_fakes") if fakes_only else ("", "")
        fold = args.out / ("reals_only" if held_out is None else f"reals_only_without_{held_out}{fold_part}")
        fold_manifest = held_out_manifest(manifest, held_out, fold, reals_only=True, fakes_only=fakes_only)
        teacher = train_teacher(fold, fold_manifest, teacher_epochs, args.teacher_seeds, threshold=False)
        row = f"reals + SBI only, no {held_out}{unseen_part if held_out else ''}"
        record(f"teacher{ensemble_label}, {row}", teacher, fold_manifest, held_out)
        if args.students:
            student = train_once(
                "general_student_sbi_fm",
                [*student_epochs, f"teacher.model={teacher}"],
                fold / student_run,
                fold_manifest,
                threshold=False,
            )
            record(f"student{student_label}, {row}", student, fold_manifest, held_out)
    if args.bundle is not None:
        # The card's retrain command: this run's options, with the local paths of the data and YuNet named generically.
        command = ["python benchmarks/generalisation.py --data realfaces-dev --out runs/generalisation"]
        command += ["--face-model face_detection_yunet.onnx"] if args.face_model else []
        command += [f"--margin {args.margin:g}", "--held-out " + " ".join(args.held_out)]
        command += ["--also-fakes-only"] if args.also_fakes_only else []
        command += ["--outline"] if args.outline else []
        command += ["--align"] if args.align else []
        command += [f"--teacher-epochs {args.teacher_epochs} --student-epochs {args.student_epochs}"]
        command += ["--students"] if args.students else []
        command += ["--teacher-seeds " + " ".join(map(str, args.teacher_seeds))] if args.teacher_seeds else []
        command += ["--set " + " ".join(args.overrides)] if args.overrides else []
        command += ["--teacher-set " + " ".join(args.teacher_overrides)] if args.teacher_overrides else []
        command += ["--student-set " + " ".join(args.student_overrides)] if args.student_overrides else []
        command += [f"--bundle {args.bundle}"]
        bundle(
            manifest,
            args.out,
            args.bundle,
            results,
            teacher_epochs,
            student_epochs,
            " ".join(command),
            args.face_model,
            args.teacher_seeds,
            student_run,
            {"teacher": f"teacher{ensemble_label}", "student": f"student{student_label}"},
        )
        results_path.write_text(json.dumps(results, indent=2))
    if args.sbi_cost:
        results["sbi_cost"] = measure_sbi_cost(manifest)
        results_path.write_text(json.dumps(results, indent=2))
    (args.out / "generalisation.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
