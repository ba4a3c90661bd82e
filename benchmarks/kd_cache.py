"""Cost of a KD epoch with the teacher-logit cache and with the teacher run every step, as ratios to a no-KD epoch.

Usage: python benchmarks/kd_cache.py [--per-class 600] [--epochs 4] [--input-size 96]
Makes a demo set, fine-tunes the demo teacher (the packaged demo_teacher.yaml), caches its logits, then times one
student epoch three ways (median of the epochs after the first). The goal is a ratio ≤ 1.15 with the cache.
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
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--student", default="resnet8_fast")
    parser.add_argument("--input-size", type=int, default=96)
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
        "optim.lr=0.001",
    ]
    teacher_config = load_config(find_configs_dir() / "demo_teacher.yaml", common)
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
        f"teacher.model={teacher.model_path}",
    ]
    settings = {
        "no KD": ["distill.loss=none"],
        "KD, cached logits": ["distill.loss=kl", f"teacher.cache={cache}"],
        "KD, teacher every step (reference)": ["distill.loss=kl", "teacher.online=true"],
    }
    seconds = {}
    for name, extra in settings.items():
        result = train(load_config(None, [*student, *extra]), work / name.replace(" ", "_").replace(",", ""))
        epochs = [row["seconds"] for row in result.history]
        seconds[name] = statistics.median(epochs[1:] if len(epochs) > 1 else epochs)
    base = seconds["no KD"]
    print(
        f"student {args.student}, teacher {teacher_config.model.name}, input {args.input_size}, "
        f"{args.per_class} images per class; one-time cache cost {cache_seconds:.1f} s"
    )
    print(f"{'setting':40s} {'s/epoch':>9s} {'ratio to no KD':>15s}")
    for name, value in seconds.items():
        print(f"{name:40s} {value:9.2f} {value / base:15.2f}")


if __name__ == "__main__":
    main()
