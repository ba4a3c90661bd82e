"""The `dfkd` command line: every command is a thin call into the library."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from dfkd import __version__

app = typer.Typer(
    name="dfkd",
    help="Train lightweight deepfake face detectors by knowledge distillation, evaluate, export and detect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
out_console = Console()


def _version_callback(value: bool) -> None:
    if value:
        out_console.print(f"dfkd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, warnings only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """dfkd: deepfake detection by knowledge distillation."""
    from dfkd.utils import enable_progress

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)], force=True
    )
    enable_progress(not quiet)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error in red and return the exit to raise."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def training_errors() -> tuple[type[Exception], ...]:
    """What a training run raises for bad input (config, cache, teacher, model file, image): one red line, exit 2."""
    from dfkd.config import ConfigError
    from dfkd.data.images import ImageLoadError
    from dfkd.distill.logit_cache import CacheMismatchError
    from dfkd.models import ModelFileError
    from dfkd.train import TeacherGateError

    return ConfigError, CacheMismatchError, TeacherGateError, ModelFileError, ImageLoadError


@app.command("make-demo-data")
def make_demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    per_class: Annotated[int | None, typer.Option(help="Images per class (all splits).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives identical files.")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
) -> None:
    """Write a synthetic real/fake face dataset in the Kaggle "140k Real and Fake Faces" layout (7:2:1)."""
    from dfkd.data.demo import DEMO_DEFAULT_PER_CLASS, make_demo_dataset

    try:
        root = make_demo_dataset(out, per_class=per_class or DEMO_DEFAULT_PER_CLASS, seed=seed, size=size)
    except ValueError as error:
        raise fail(str(error)) from None
    out_console.print(f"demo dataset written to [bold]{root}[/]")


def _print_counts(report) -> None:
    table = Table(title="manifest")
    sources = sorted({s.source for s in report.samples})
    table.add_column("split")
    table.add_column("label")
    for source in sources:
        table.add_column(source, justify="right")
    table.add_column("total", justify="right")
    counts = report.counts
    for split in ("train", "val", "test"):
        for label in ("real", "fake"):
            row = counts.get(split, {}).get(label, {})
            table.add_row(split, label, *(str(row.get(s, 0)) for s in sources), str(sum(row.values())))
    out_console.print(table)
    out_console.print(
        f"{len(report.samples)} images · rejected {len(report.rejected)} · unlabelled {len(report.unlabelled)}"
        f" · other files skipped {report.other_files}"
    )
    for path, reason in report.rejected[:20]:
        out_console.print(f"  [red]rejected[/] {path}: {reason}")
    if len(report.rejected) > 20:
        out_console.print(f"  … and {len(report.rejected) - 20} more (see the .rejected.csv file)")
    for path in report.unlabelled[:10]:
        out_console.print(f"  [yellow]unlabelled[/] {path}")
    if report.leakage:
        out_console.print(f"[bold yellow]leakage:[/] {len(report.leakage)} identical file groups span splits")
        for digest, members in report.leakage[:10]:
            out_console.print(f"  {digest[:12]}: {', '.join(members)}")


@app.command()
def scan(
    roots: Annotated[list[Path], typer.Argument(help="Dataset roots; several roots make a merged dataset.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")] = Path("manifest.csv"),
    ratios: Annotated[
        str, typer.Option(help="train,val,test ratios for folders without split folders.")
    ] = "0.7,0.2,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the stratified split.")] = 42,
    resplit: Annotated[bool, typer.Option(help="Ignore split folders and split everything anew.")] = False,
    verify: Annotated[bool, typer.Option(help="Decode every image; reject unreadable ones; report leakage.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes for --verify (default: CPU count).")] = None,
) -> None:
    """Find real/fake images under ROOTS, split them and write a manifest CSV with a JSON sidecar."""
    from dfkd.data.build import build_manifest
    from dfkd.data.manifest import parse_ratios

    try:
        ratio_values = parse_ratios(ratios)
        report = build_manifest(
            roots, out, ratios=ratio_values, seed=seed, resplit=resplit, verify=verify, workers=workers
        )
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    _print_counts(report)
    out_console.print(f"manifest written to [bold]{report.manifest_path}[/] (hash {report.content_hash[:12]})")
    if not report.samples:
        raise fail("no labelled images found", code=1)


@app.command("train")
def train_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/).")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a key: section.key=value (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (config, metrics, model, checkpoint).")] = Path(
        "runs/train"
    ),
    resume: Annotated[bool, typer.Option(help="Continue from RUN_DIR/last.ckpt exactly where it stopped.")] = False,
) -> None:
    """Train a teacher or a student (with KL / MSE distillation) as the config says."""
    from dfkd.config import load_config
    from dfkd.train import train

    try:
        run_config = load_config(config, overrides or [])
        result = train(run_config, out, resume=resume)
    except (*training_errors(), ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    out_console.print(
        f"best {run_config.train.monitor} {result.best_value:.4f} at epoch {result.best_epoch}; "
        f"model written to [bold]{result.model_path}[/]"
    )


@app.command("cache-logits")
def cache_logits(
    teacher: Annotated[Path, typer.Option(help="Teacher model file (.safetensors).")],
    manifest: Annotated[Path, typer.Option(help="Manifest CSV from `dfkd scan`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache folder.")],
    resize_size: Annotated[int | None, typer.Option(help="Resize (default: the teacher's).")] = None,
    input_size: Annotated[int | None, typer.Option(help="Crop (default: the teacher's); match the student's.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per teacher forward.")] = 64,
    num_workers: Annotated[int, typer.Option(help="Loader workers.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 …")] = "cpu",
) -> None:
    """Run the teacher once over every split and store its logits, stamped with data, teacher and transform."""
    from dfkd.distill.logit_cache import compute_logit_cache
    from dfkd.models import ModelFileError

    try:
        path = compute_logit_cache(
            teacher,
            manifest,
            out,
            resize_size=resize_size,
            input_size=input_size,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
        )
    except (ModelFileError, ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    out_console.print(f"teacher logits cached in [bold]{path}[/]")


def _register_command_modules() -> None:
    """Commands of other areas live in their own modules (``dfkd.commands.*``), each with ``register(app)``."""
    import importlib
    import pkgutil

    import dfkd.commands

    for info in sorted(pkgutil.iter_modules(dfkd.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"dfkd.commands.{info.name}")
        module.register(app)


_register_command_modules()

if __name__ == "__main__":
    app()
