"""Cost of a KD epoch with the teacher-logit cache and with the teacher run every step, as ratios to a no-KD epoch.

Usage: python benchmarks/kd_cache.py [--per-class 600] [--repeats 6] [--epochs 4] [--input-size 96] [--no-online]
Makes a demo set, fine-tunes the demo teacher (configs/demo_teacher.yaml), caches its logits, then trains the student
in each setting ``--repeats`` times, the settings interleaved (their order rotated every repeat, so drift in the
machine's load falls on all of them alike). Each run's epochs after the first are timed twice: wall-clock seconds
(training + validation) and the CPU seconds of the training process itself (where distillation adds work; the
DataLoader workers' decoding is the same in every setting; with `train.keep=last` every epoch saves the model in
every setting). Each table gives, per setting, the median and the minimum (the epoch least disturbed by other load on
a shared machine) with their ratios to no KD, and the range of the per-repeat ratios (the noise). Part 2 times the
method-specific part of a step alone, the one place distillation adds work per batch: each distiller's loss, forward
and backward, on one batch of logits, beside a whole student step. Goal: ≤ 1.05 with the cache.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from dfkd.config import load_config
from dfkd.data import build_manifest
from dfkd.data.demo import make_demo_dataset
from dfkd.distill.logit_cache import compute_logit_cache
from dfkd.train import train


def _demo_configs() -> Path:
    try:
        from dfkd.experiments.demo import find_configs_dir
    except ImportError:  # versions before dfkd.experiments (for before/after runs from an older checkout)
        from dfkd.demo import find_configs_dir
    return find_configs_dir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first of each run is not timed")
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
        _demo_configs() / "demo_teacher.yaml", [*common, f"train.epochs={args.teacher_epochs}"]
    )
    teacher_file = work / "teacher" / "model.safetensors"
    teacher_path = teacher_file if teacher_file.exists() else train(teacher_config, work / "teacher").model_path
    started = time.perf_counter()
    cache = compute_logit_cache(
        teacher_path,
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
        "train.keep=last",  # every epoch writes the model file in every setting: equal work outside the steps
        f"teacher.model={teacher_path}",
    ]
    settings = {
        "no KD": ["distill.loss=none"],
        "KD, cached logits": ["distill.loss=kl", f"teacher.cache={cache}"],
    }
    if not args.no_online:
        settings["KD, teacher every step (reference)"] = ["distill.loss=kl", "teacher.online=true"]
    names = list(settings)
    wall: dict[str, list[list[float]]] = {name: [] for name in names}
    cpu: dict[str, list[list[float]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            run_dir = work / "runs" / f"{repeat}_{names.index(name)}"
            cpu_marks: list[float] = []
            result = train(
                load_config(None, [*student, *settings[name]]),
                run_dir,
                epoch_callback=lambda epoch, row, marks=cpu_marks: marks.append(time.process_time()),
            )
            seconds = [row["seconds"] for row in result.history]
            wall[name].append(seconds[1:] if len(seconds) > 1 else seconds)
            cpu[name].append([b - a for a, b in itertools.pairwise(cpu_marks)] or cpu_marks)
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{n} {wall[n][-1][0]:.2f} s" for n in order))
    print(
        f"student {args.student}, teacher {teacher_config.model.name}, input {args.input_size}, "
        f"{args.per_class} images per class, {args.repeats} interleaved repeats of {args.epochs} epochs "
        f"(epochs 2.. timed); one-time cache cost {cache_seconds:.1f} s"
    )
    for title, times in (("wall-clock s/epoch", wall), ("training-process CPU s/epoch", cpu)):
        if args.repeats:
            _print_table(title, times)
    _print_loss_costs(args, cache)


def _print_table(title: str, times: dict[str, list[list[float]]]) -> None:
    """Median and minimum per setting (the minimum: the run least disturbed by other load) and their ratios."""
    medians = {name: statistics.median(t for run in runs for t in run) for name, runs in times.items()}
    minima = {name: min(t for run in runs for t in run) for name, runs in times.items()}
    print(f"\n{title}")
    print(f"{'setting':40s} {'median':>8s} {'ratio':>6s} {'min':>8s} {'ratio':>6s} {'per-repeat ratios':>18s}")
    for name in times:
        per_repeat = [
            statistics.median(run) / statistics.median(none)
            for run, none in zip(times[name], times["no KD"], strict=True)
        ]
        spread = f"{min(per_repeat):.2f}–{max(per_repeat):.2f}"
        median_ratio, min_ratio = medians[name] / medians["no KD"], minima[name] / minima["no KD"]
        print(f"{name:40s} {medians[name]:8.2f} {median_ratio:6.2f} {minima[name]:8.2f} {min_ratio:6.2f} {spread:>18s}")


def _print_loss_costs(args: argparse.Namespace, cache: Path, batch: int = 32, calls: int = 200) -> None:
    """Per-batch cost of each method's loss (forward + backward on ``[batch]`` logits) beside one student step."""
    try:
        from dfkd.distill.distillers import CachedLogits, LabelsOnly
    except ImportError:  # a version without distillers
        print("\n(part 2 needs dfkd.distill.distillers)")
        return
    import torch

    from dfkd.config import DistillConfig
    from dfkd.data import read_manifest
    from dfkd.distill.logit_cache import load_logit_cache
    from dfkd.models import create_model
    from dfkd.models.fast import channels_last_input, to_channels_last

    torch.manual_seed(0)
    manifest = read_manifest(Path(cache).parent / "manifest.csv")
    distillers = {
        "no KD": LabelsOnly(),
        "KD, cached logits": CachedLogits(DistillConfig(loss="kl"), load_logit_cache(cache, manifest)),
    }
    model = to_channels_last(create_model(args.student))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = channels_last_input(torch.randn(batch, 3, args.input_size, args.input_size))
    labels = (torch.rand(batch) > 0.5).float()
    indices = torch.randperm(len(manifest.split("train")))[:batch]

    def losses(distiller) -> None:
        for _ in range(calls):
            logits = torch.randn(batch, requires_grad=True)
            distiller.loss(logits, labels, images=images, indices=indices).backward()

    def student_step() -> None:
        loss = distillers["no KD"].loss(model(images).float(), labels, images=images, indices=indices)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    timings: dict[str, list[float]] = {name: [] for name in [*distillers, "student step"]}
    for _ in range(7):
        for name, distiller in distillers.items():
            started = time.process_time()
            losses(distiller)
            timings[name].append((time.process_time() - started) / calls)
        started = time.process_time()
        student_step()
        timings["student step"].append(time.process_time() - started)
    step = statistics.median(timings["student step"])
    print(f"\nper batch of {batch} (CPU ms, median of 7 interleaved repeats)")
    print(f"{'part':40s} {'ms':>9s} {'of a step':>10s}")
    for name, values in timings.items():
        value = statistics.median(values)
        label = "student step (forward, backward, Adam)" if name == "student step" else f"loss only: {name}"
        print(f"{label:40s} {value * 1e3:9.3f} {value / step:10.1%}")


if __name__ == "__main__":
    main()
