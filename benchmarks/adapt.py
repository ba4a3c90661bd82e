"""``dfkd adapt`` measured: a student adapted to a collection it never saw, from genuine photos of it alone.

``dfkd calibrate`` moves the threshold; it cannot make a model rank a collection's fakes above its photos
(docs/results/calibration.md). Knowing a collection's genuine photos in training does: the bundle's recipe trained
with them ranked that collection's unseen swaps 0.88 against 0.62 without them (docs/results/generalisation.md).
``dfkd adapt`` fine-tunes a trained model on a user's genuine photos and their self-blended fakes, taught by the model
as it was (``--alpha`` of the loss). This runs it (``adapt_model``, what the command runs) on the fold of
``benchmarks/generalisation.py`` that never saw the held-out source.

Per draw (seed 0, 1, …): N genuine photos of the held-out source at random (the original photos, which ``adapt`` crops
as the model's card says); the source's other photos and all its fakes are tested, with the other sources' test
splits of the fold (never trained on). Reported per variant as the mean over draws (min–max): AUC per source, and
for the held-out source the false-positive rate on its tested photos and the share of its fakes caught at the
model's threshold.

Usage: python benchmarks/adapt.py --data ../shared/data/realfaces-dev --fold-out runs/g224lab \
           --held-out inswapper_ffhq --face-model ../shared/models/face_detection_yunet.onnx --out runs/adapt \
           [--photos 100] [--draws 3] [--alphas 0 0.5 0.8]

``--fold-out`` is the ``--out`` of ``benchmarks/generalisation.py`` that trained the fold without the held-out source
(its ``all.csv`` manifest of face crops and the fold's student, ``without_SOURCE/student``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from generalisation import score  # this folder's benchmark: the same scoring as the folds it reads


def draw(all_manifest: Path, data: Path, held_out: str, photos: int, seed: int, out: Path) -> tuple[Path, Path]:
    """A folder of ``photos`` genuine photos of ``held_out`` drawn with ``seed`` (links to the originals), and a
    manifest whose test split is every other crop of that source and the other sources' test crops."""
    from dfkd.data.manifest import read_manifest, read_sidecar, write_manifest
    from dfkd.data.scan import Sample

    folder, manifest = out / "photos", out / "test.csv"
    samples = read_manifest(all_manifest).samples
    reals = sorted((s for s in samples if s.source == held_out and s.label == "real"), key=lambda s: s.path)
    random.Random(seed).shuffle(reals)
    chosen = {Path(sample.path).name for sample in reals[:photos]}
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for name in sorted(chosen):  # realfaces-dev's crops keep their photo's file name (a content hash)
            (folder / name).symlink_to((data / held_out / "real" / name).resolve())
    rows = [
        Sample(s.path, s.label, "test", s.source, s.size)
        for s in samples
        if (s.source == held_out and Path(s.path).name not in chosen) or (s.source != held_out and s.split == "test")
    ]
    parent = read_sidecar(all_manifest)
    info = {key: parent[key] for key in ("roots", "face_crop") if key in parent}
    write_manifest(manifest, rows, {**info, "adapt_draw": seed, "held_out": held_out})
    return folder, manifest


def figures(model: Path, manifest: Path, held_out: str) -> dict[str, float]:
    """AUC per source on the test split (generalisation.py's ``score``), and the held-out source's false-positive
    rate and fakes caught at the card's threshold."""
    cells = score(model, manifest, held_out)["sources"]
    record = {source: cell["auc"] for source, cell in cells.items()}
    record["fpr"], record["caught"] = cells[held_out]["fpr"], cells[held_out]["tpr"]
    return record


def summary(records: list[dict[str, float]], key: str) -> str:
    values = np.array([record[key] for record in records])
    percent = key in ("fpr", "caught")
    scale, digits = (100, 1) if percent else (1, 3)
    text = f"{scale * values.mean():.{digits}f}"
    if len(values) > 1:
        text += f" ({scale * values.min():.{digits}f}–{scale * values.max():.{digits}f})"
    return text + (" %" if percent else "")


def main() -> None:
    from dfkd.experiments.adapt import adapt_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="realfaces-dev (the original photos).")
    parser.add_argument("--fold-out", type=Path, required=True)
    parser.add_argument("--held-out", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--face-model", default=None)
    parser.add_argument("--model", type=Path, default=None, help="Default: the fold's student.")
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    args = parser.parse_args()

    model = args.model or args.fold_out / f"without_{args.held_out}" / "student" / "model.safetensors"
    names = {None: "before"} | {
        alpha: f"adapted, taught by itself at alpha {alpha:g}" if alpha else "adapted, photos and blends alone"
        for alpha in args.alphas
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names.values()}
    seconds: list[float] = []  # per adaptation, cropping included
    for seed in range(args.draws):
        folder = args.out / f"draw{seed}"
        photos, manifest = draw(args.fold_out / "all.csv", args.data, args.held_out, args.photos, seed, folder)
        for alpha, name in names.items():
            tuned = model
            if alpha is not None:
                tuned = folder / f"alpha{alpha:g}" / "model.safetensors"
                timing = tuned.parent / "seconds.txt"
                if not tuned.is_file():  # finished variants are reused, with the time they took
                    start = time.perf_counter()
                    adapt_model(model, photos, tuned, work=tuned.parent, face_model=args.face_model, alpha=alpha)
                    timing.write_text(f"{time.perf_counter() - start:.1f}\n")
                seconds.append(float(timing.read_text()))
            results[name].append(figures(tuned, manifest, args.held_out))

    sources = sorted(key for key in results["before"][0] if key not in ("fpr", "caught"))
    header = [f"{source} AUC" for source in sources] + [f"FPR on {args.held_out}'s other photos", "its fakes caught"]
    lines = [
        f"{model}: adapted on {args.photos} genuine photos of {args.held_out}; mean over {args.draws} draws (min–max)",
        "",
        "| model | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]
    for name, records in results.items():
        lines.append(f"| {name} | " + " | ".join(summary(records, key) for key in [*sources, "fpr", "caught"]) + " |")
    lines += ["", f"one adaptation, cropping included: {np.median(seconds):.0f} s (median of {len(seconds)})"]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapt.md").write_text("\n".join(lines) + "\n")
    arguments = {key: str(value) for key, value in vars(args).items()}
    record = {"args": arguments, "results": results, "seconds_per_adaptation": seconds}
    (args.out / "adapt.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
