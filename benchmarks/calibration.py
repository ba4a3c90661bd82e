"""How many of a collection's genuine photos ``dfkd calibrate`` needs to keep false alarms on that collection down.

A model's threshold is set on its own validation reals; on a collection it never saw, genuine photos can score
higher (docs/results/generalisation.md: the bundle's recipe trained without the FFHQ-style collection called 34 % of
its photos fake). This scores a collection's genuine photos and its known fakes once, as ``dfkd detect`` and
``dfkd calibrate`` do (faces found and cropped as in training), then many times over draws a calibration sample of N
genuine photos, sets the threshold ``dfkd calibrate`` would set on it (at most ``--max-fpr`` of them fake) and
measures, on the collection's other genuine photos and on its fakes, the false-positive rate and the share of fakes
caught. The card's own threshold is the first row.

Usage: python benchmarks/calibration.py --model runs/g224lab/without_inswapper_ffhq/student/model.safetensors \
           --reals $DATA/inswapper_ffhq/real --fakes $DATA/inswapper_ffhq/fake \
           [--face-model ../shared/models/face_detection_yunet.onnx] [--max-fpr 0.05] [--sizes 20 50 100 200] \
           [--draws 500] [--seed 0] [--not-trained-on FOLD_MANIFEST] [--out calibration.json]

``$DATA`` is ../shared/data/realfaces-dev. The genuine photos must be ones the model never trained on: use a fold of
``benchmarks/generalisation.py`` that held the whole source out, or for a fakes-only fold (the collection's training
reals trained on) pass its manifest as ``--not-trained-on``, which leaves its training images out.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from dfkd import Detector
from dfkd.data import read_manifest
from dfkd.inference.calibrate import score_items
from dfkd.inference.run import collect_inputs
from dfkd.thresholds import fpr_threshold
from dfkd.utils import atomic_write


def untrained_photos(paths: list[Path], manifest: Path | None) -> list[str]:
    """The images and videos under ``paths``, less those whose file name is a training image's in ``manifest`` (a
    fold's manifest; realfaces-dev's file names are content hashes, so a name is an image)."""
    items = [item.path for item in collect_inputs(paths).items]
    if manifest is None:
        return items
    trained = {Path(sample.path).name for sample in read_manifest(manifest).split("train")}
    return [item for item in items if Path(item).name not in trained]


def operating_point(threshold: float, reals: np.ndarray, fakes: np.ndarray) -> tuple[float, float]:
    """(share of ``reals`` called fake, share of ``fakes`` caught) at ``threshold``."""
    return float(np.mean(reals >= threshold)), float(np.mean(fakes >= threshold))


def calibration_draws(
    reals: np.ndarray, fakes: np.ndarray, size: int, draws: int, max_fpr: float, rng: np.random.Generator
) -> dict[str, float]:
    """Over ``draws`` random samples of ``size`` genuine scores: the calibrated threshold, and the false-positive
    rate on the other genuine scores and the fakes caught at it (medians and 10th–90th percentiles)."""
    thresholds, fprs, caught = [], [], []
    for _ in range(draws):
        order = rng.permutation(len(reals))
        sample, rest = reals[order[:size]], reals[order[size:]]
        threshold = fpr_threshold(np.zeros(size, dtype=int), sample, max_fpr)
        fpr, tpr = operating_point(threshold, rest, fakes)
        thresholds.append(threshold)
        fprs.append(fpr)
        caught.append(tpr)
    fprs_array = np.asarray(fprs)
    return {
        "size": size,
        "held_out_reals": len(reals) - size,
        "threshold_median": float(np.median(thresholds)),
        "fpr_median": float(np.median(fprs_array)),
        "fpr_p10": float(np.percentile(fprs_array, 10)),
        "fpr_p90": float(np.percentile(fprs_array, 90)),
        "draws_fpr_over_twice_the_cap": float(np.mean(fprs_array > 2 * max_fpr)),
        "caught_median": float(np.median(caught)),
        "caught_p10": float(np.percentile(caught, 10)),
        "caught_p90": float(np.percentile(caught, 90)),
    }


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--reals", type=Path, nargs="+", required=True, help="The collection's genuine photos.")
    parser.add_argument("--fakes", type=Path, nargs="+", required=True, help="The collection's fakes.")
    parser.add_argument("--face-model", default=None, help="YuNet ONNX file (the face detector used in training).")
    parser.add_argument(
        "--not-trained-on",
        type=Path,
        default=None,
        help="A fold's manifest: genuine photos named like one of its training images are left out.",
    )
    parser.add_argument("--max-fpr", type=float, default=0.05)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("calibration.json"))
    args = parser.parse_args()

    detector = Detector.load(args.model, face_model=args.face_model)
    reals, failed_reals = score_items(detector, untrained_photos(args.reals, args.not_trained_on))
    fakes, failed_fakes = score_items(detector, args.fakes)
    for item, reason in failed_reals + failed_fakes:
        print(f"not scored: {item}: {reason}")
    too_large = [size for size in args.sizes if not 0 < size < len(reals)]
    if too_large:
        parser.error(f"--sizes {too_large}: each must leave genuine photos to test ({len(reals)} were scored)")
    card_fpr, card_caught = operating_point(detector.threshold, reals, fakes)
    auc = float(roc_auc_score(np.r_[np.zeros(len(reals)), np.ones(len(fakes))], np.r_[reals, fakes]))
    rng = np.random.default_rng(args.seed)
    rows = [calibration_draws(reals, fakes, size, args.draws, args.max_fpr, rng) for size in args.sizes]

    header = f"{args.model} on {len(reals)} genuine photos and {len(fakes)} fakes: AUC {auc:.3f}"
    lines = [
        header,
        "",
        "| threshold | genuine photos calibrated on | FPR on the other genuine photos (median, 10–90 %) "
        f"| draws over {_percent(2 * args.max_fpr)} | fakes caught (median, 10–90 %) |",
        "|---|---:|---:|---:|---:|",
        f"| the card's, {detector.threshold:.3f} ({detector.card.threshold_source}) | – | {_percent(card_fpr)} (all "
        f"{len(reals)}) | – | {_percent(card_caught)} |",
    ]
    for row in rows:
        lines.append(
            f"| calibrated at {_percent(args.max_fpr)}, median {row['threshold_median']:.3f} | {row['size']} | "
            f"{_percent(row['fpr_median'])} ({_percent(row['fpr_p10'])}–{_percent(row['fpr_p90'])}) | "
            f"{_percent(row['draws_fpr_over_twice_the_cap'])} | {_percent(row['caught_median'])} "
            f"({_percent(row['caught_p10'])}–{_percent(row['caught_p90'])}) |"
        )
    print("\n".join(lines))
    record = {
        "model": str(args.model),
        "reals": [str(path) for path in args.reals],
        "fakes": [str(path) for path in args.fakes],
        "n_reals": len(reals),
        "n_fakes": len(fakes),
        "auc": auc,
        "max_fpr": args.max_fpr,
        "draws": args.draws,
        "seed": args.seed,
        "card": {"threshold": detector.threshold, "fpr": card_fpr, "caught": card_caught},
        "calibrated": rows,
        "environment": {"python": platform.python_version(), "machine": platform.machine()},
    }
    with atomic_write(args.out) as handle:
        json.dump(record, handle, indent=2)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
