"""Speed of training steps in channels-last (NHWC) layout and with the frozen teacher's BatchNorm folded, as ratios
to the plain NCHW layout measured in the same run.

Usage: python benchmarks/train_step.py [--batch 32] [--input-size 96] [--student resnet8_fast]
           [--teacher mobilenet_v2] [--repeats 15] [--epochs 3] [--per-class 200] [--threads N]

Part 1 times single steps on random batches (no data loading), interleaving the settings so that load on a shared
machine hits them alike; the median of ``--repeats``: the student's training step (forward, backward, optimiser),
the frozen teacher's forward, and a function-matching step (teacher forward + student step, the teacher online as in
``data.mixup`` / random-crop distillation). Part 2 times whole epochs of ``dfkd.train.train`` on a generated demo
set, function matching with the teacher online (random crops + mixup), ``train.channels_last`` true and false
(median epoch time after the first; the frozen teacher is BatchNorm-folded in both). The teacher has random
weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _median_times(functions: dict[str, object], repeats: int) -> dict[str, float]:
    for function in functions.values():  # warm-up: oneDNN picks and caches its kernels on first use
        function()
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def step_times(args: argparse.Namespace) -> dict[str, float]:
    from dfkd.models import create_model
    from dfkd.models.fast import channels_last_input, frozen_inference_model, to_channels_last

    images = torch.randn(args.batch, 3, args.input_size, args.input_size)
    images_nhwc = channels_last_input(images)
    labels = torch.rand(args.batch)
    student = create_model(args.student)
    student_nhwc = to_channels_last(create_model(args.student))
    student_nhwc.load_state_dict(student.state_dict())
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (student, student_nhwc)}
    teacher = create_model(args.teacher).eval().requires_grad_(False)
    teacher_nhwc = frozen_inference_model(teacher, fold_batchnorm=False)
    teacher_fast = frozen_inference_model(teacher)

    def student_step(model, batch, targets=labels) -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).float().view(-1), targets)
        loss.backward()
        optimizers[id(model)].step()
        optimizers[id(model)].zero_grad(set_to_none=True)

    def teacher_forward(model, batch) -> torch.Tensor:
        with torch.no_grad():
            return torch.sigmoid(model(batch).float().view(-1))

    return _median_times(
        {
            "student step, NCHW": lambda: student_step(student, images),
            "student step, NHWC": lambda: student_step(student_nhwc, images_nhwc),
            "teacher forward, NCHW": lambda: teacher_forward(teacher, images),
            "teacher forward, NHWC": lambda: teacher_forward(teacher_nhwc, images_nhwc),
            "teacher forward, NHWC + BN folded": lambda: teacher_forward(teacher_fast, images_nhwc),
            "function-matching step, NCHW": lambda: student_step(student, images, teacher_forward(teacher, images)),
            "function-matching step, NHWC + BN folded": lambda: student_step(
                student_nhwc, images_nhwc, teacher_forward(teacher_fast, images_nhwc)
            ),
        },
        args.repeats,
    )


def epoch_times(args: argparse.Namespace, work: Path) -> dict[str, float]:
    from dfkd.config import load_config
    from dfkd.data import build_manifest
    from dfkd.data.demo import make_demo_dataset
    from dfkd.models import create_model, save_model
    from dfkd.train import train

    data = make_demo_dataset(work / "data", per_class=args.per_class, seed=0)
    manifest = work / "manifest.csv"
    build_manifest([data], manifest)
    teacher_path = work / "teacher.safetensors"
    save_model(create_model(args.teacher), teacher_path)
    results = {}
    for layout in ("false", "true"):
        overrides = [
            f"data.manifest={manifest}",
            f"data.input_size={args.input_size}",
            f"data.resize_size={round(args.input_size * 8 / 7)}",
            f"data.batch_size={args.batch}",
            "data.num_workers=0",
            "data.augment=crop",
            "data.mixup=0.4",
            f"model.name={args.student}",
            "train.accelerator=cpu",
            f"train.epochs={args.epochs}",
            f"train.patience={args.epochs}",
            f"train.channels_last={layout}",
            "distill.loss=kl",
            "distill.alpha=1.0",
            "distill.temperature=1.0",
            f"teacher.model={teacher_path}",
            "teacher.skip_gate=true",
        ]
        result = train(load_config(None, overrides), work / f"run_{layout}")
        seconds = [row["seconds"] for row in result.history[1:]] or [result.history[0]["seconds"]]
        results[f"function-matching epoch, channels_last={layout}"] = statistics.median(seconds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--student", default="resnet8_fast")
    parser.add_argument("--teacher", default="mobilenet_v2")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per layout in part 2 (0: skip part 2)")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} at {args.input_size} px")
    steps = step_times(args)
    for name, seconds in steps.items():
        print(f"{name:45s} {seconds * 1000:8.1f} ms")
    pairs = [
        ("student step", "student step, NCHW", "student step, NHWC"),
        ("teacher forward (NHWC)", "teacher forward, NCHW", "teacher forward, NHWC"),
        ("teacher forward (NHWC + BN folded)", "teacher forward, NCHW", "teacher forward, NHWC + BN folded"),
        ("function-matching step", "function-matching step, NCHW", "function-matching step, NHWC + BN folded"),
    ]
    for label, base, fast in pairs:
        print(f"ratio {label:40s} {steps[fast] / steps[base]:.2f} (time vs NCHW; < 1 is faster)")
    if args.epochs > 0:
        with tempfile.TemporaryDirectory(prefix="dfkd-train-step-") as work:
            epochs = epoch_times(args, Path(work))
        for name, seconds in epochs.items():
            print(f"{name:45s} {seconds:8.2f} s")
        base, fast = epochs.values()
        note = "train.channels_last true vs false; the teacher BatchNorm-folded in both"
        print(f"ratio {'function-matching epoch':40s} {fast / base:.2f} ({note})")


if __name__ == "__main__":
    main()
