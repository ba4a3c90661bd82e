"""CLI: evaluate, benchmark, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dfkd.commands.common import check_output, out_console, reported_errors, shown


def evaluate(
    model: Annotated[Path, typer.Argument(help="A dfkd model file (.safetensors).")],
    manifest: Annotated[Path, typer.Option(help="Manifest CSV.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for predictions.csv and metrics.json.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    threshold: Annotated[
        str | None,
        typer.Option(
            help="'auto' (EER on val) or 'fpr=0.05' (≤ 5 % of val reals called fake), stored in the model file; a "
            "number; or the model file's (default)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward.")] = 64,
    num_workers: Annotated[int, typer.Option(help="Loader workers.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda …")] = "cpu",
) -> None:
    """Predict one split and write predictions.csv and metrics.json (accuracy, F1, AUC, EER, ECE, per source …)."""
    from dfkd.evaluate.evaluator import evaluate_model

    check_output("--out", out, folder=True)  # before the predictions, not after them
    value: str | float | None = threshold
    if threshold is not None:
        try:
            value = float(threshold)
        except ValueError:
            value = threshold  # a policy ('auto', 'fpr=X'): evaluate_model says what a bad one should be
    with reported_errors():
        metrics = evaluate_model(
            model,
            manifest,
            out,
            split=split,
            threshold=value,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
        )
    out_console.print(
        f"{split}: n={metrics['n']} accuracy {metrics['accuracy']:.4f} F1(fake) {metrics['f1']:.4f} "
        f"F1(real) {metrics['f1_real']:.4f} AUC {metrics['roc_auc']:.4f} EER {metrics['eer']:.4f} "
        f"(threshold {metrics['threshold']:.4f}, {metrics['threshold_source']})"
    )
    out_console.print(f"written to [bold]{shown(out)}[/]")


def benchmark(
    model: Annotated[str, typer.Argument(help="A model file (.safetensors / .onnx) or an architecture name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file to write.")] = Path("bench.json"),
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[str, typer.Option("--batch-size", help="Comma-separated batch sizes.")] = "1,32",
    dtype: Annotated[str, typer.Option(help="fp32, bf16 or fp16.")] = "fp32",
    backend: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    images: Annotated[Path | None, typer.Option(help="Folder of JPEGs for the end-to-end measures.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Input side (default: the model's).")] = None,
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format (torch).")] = True,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    max_images: Annotated[int, typer.Option(help="Images used end to end.")] = 512,
    seconds: Annotated[float, typer.Option(help="Minimum timing per batch size.")] = 2.0,
) -> None:
    """Measure params, GFLOPs, throughput and latency (model-only, end to end, and the reference's FPS)."""
    from dfkd.deploy.benchmark import run_benchmark
    from dfkd.utils import write_json

    with reported_errors(KeyError):
        sizes = tuple(int(v) for v in batch_size.split(","))
        result = run_benchmark(
            model,
            device=device,
            batch_sizes=sizes,
            dtype=dtype,
            backend=backend,
            images_dir=images,
            input_size=input_size,
            channels_last=channels_last,
            compile_model=compile_model,
            max_images=max_images,
            min_seconds=seconds,
        )
    write_json(out, result)
    for size, row in result["model_only"].items():
        out_console.print(
            f"batch {size}: {row['throughput']:.1f} img/s, latency p50 {row['latency_ms_p50']:.2f} ms "
            f"p95 {row['latency_ms_p95']:.2f} ms"
        )
    if result["end_to_end"]:
        out_console.print(f"end to end from JPEG: {result['end_to_end']['throughput']:.1f} img/s")
    if result["reference_measure"]:
        out_console.print(f"reference's FPS measure: {result['reference_measure']['throughput']:.1f} img/s")
    out_console.print(f"{result['params']:,} params, {result['gflops']:.3f} GFLOPs; written to [bold]{shown(out)}[/]")


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (from `dfkd train`, evaluated and benchmarked).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report"),
) -> None:
    """Write report.md with the reference's tables filled from these runs, and PNG figures."""
    from dfkd.evaluate.report import build_report

    with reported_errors():
        path = build_report(runs, out)
    out_console.print(f"report written to [bold]{shown(path)}[/]")


COMMANDS = {"evaluate": evaluate, "benchmark": benchmark, "report": report}
