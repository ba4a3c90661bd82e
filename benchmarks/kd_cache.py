"""Cost of a KD epoch with the teacher-logit cache and with the teacher run every step, as ratios to a no-KD epoch.

Usage: python benchmarks/kd_cache.py [--per-class 600] [--repeats 5] [--epochs 2] [--input-size 96] [--no-online]
Makes a demo set, fine-tunes the demo teacher (configs/demo_teacher.yaml), caches its logits, then trains the student
in each setting ``--repeats`` times, the settings interleaved (their order rotated every repeat, so drift in the
machine's load falls on all of them alike). Each run's epochs after the first are timed; the table gives the median
per setting and its ratio to the no-KD median, with the spread of the per-repeat ratios. Goal: ≤ 1.05 with the cache.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dfkd.config import load_config
from dfkd.data import build_manifest
from dfkd.data.demo import make_demo_dataset
from dfkd.demo import find_configs_dir
from dfkd.distill.logit_cache import compute_logit_cache
from dfkd.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the first of each run is not timed")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--student", default="resnet8_fast")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--no-online", action="store_true", help="skip the teacher-every-step reference")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="dfkd-kd-cache-"))
    data = make_demo_dataset(work / "data", per_class=args.per_class, seed=0)
    manifest = work / "manifest.csv"
    build_manifest([data], manifest)
    common = [
        f"data.manifest={manifest}",
        f"data.input_size={args.input_size}",
        "data.num_workers=2",
        "train.accelerator=cpu",
        "train.tensorboard=off",
        "optim.lr=0.001",
    ]
    teacher_config = load_config(
        find_configs_dir() / "demo_teacher.yaml", [*common, f"train.epochs={args.teacher_epochs}"]
    )
    teacher = train(teacher_config, work / "teacher")
    started = time.perf_counter()
    cache = compute_logit_cache(
        teacher.model_path,
        manifest,
        work / "cache",
        input_size=args.input_size,
        resize_size=256,
        splits=("train", "val"),
    )
    cache_seconds = time.perf_counter() - started
    student = [
        *common,
        f"model.name={args.student}",
        f"train.epochs={args.epochs}",
        f"train.patience={args.epochs}",
        f"teacher.model={teacher.model_path}",
    ]
    settings = {
        "no KD": ["distill.loss=none"],
        "KD, cached logits": ["distill.loss=kl", f"teacher.cache={cache}"],
    }
    if not args.no_online:
        settings["KD, teacher every step (reference)"] = ["distill.loss=kl", "teacher.online=true"]
    names = list(settings)
    epoch_seconds: dict[str, list[list[float]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            run_dir = work / "runs" / f"{repeat}_{name.split(',')[0].replace(' ', '_')}_{names.index(name)}"
            result = train(load_config(None, [*student, *settings[name]]), run_dir)
            timed = [row["seconds"] for row in result.history]
            epoch_seconds[name].append(timed[1:] if len(timed) > 1 else timed)
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{n} {epoch_seconds[n][-1]}" for n in names))
    medians = {name: statistics.median(s for run in runs for s in run) for name, runs in epoch_seconds.items()}
    base = medians["no KD"]
    print(
        f"student {args.student}, teacher {teacher_config.model.name}, input {args.input_size}, "
        f"{args.per_class} images per class, {args.repeats} interleaved repeats of {args.epochs} epochs "
        f"(epochs 2.. timed); one-time cache cost {cache_seconds:.1f} s"
    )
    print(f"{'setting':40s} {'s/epoch':>9s} {'ratio to no KD':>15s} {'per-repeat ratios':>30s}")
    for name, value in medians.items():
        per_repeat = [
            statistics.median(run) / statistics.median(none)
            for run, none in zip(epoch_seconds[name], epoch_seconds["no KD"], strict=True)
        ]
        spread = f"{min(per_repeat):.2f}–{max(per_repeat):.2f}"
        print(f"{name:40s} {value:9.2f} {value / base:15.2f} {spread:>30s}")


if __name__ == "__main__":
    main()
