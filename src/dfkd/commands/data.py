"""CLI: make-demo-data and scan — the commands that make or find a dataset and write its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from dfkd.commands.common import fail, out_console, reported_errors, shown
from dfkd.utils import unwritable_reason

if TYPE_CHECKING:
    from dfkd.data.build import ScanReport


def make_demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    # The default is dfkd.data.demo.DEMO_DEFAULT_PER_CLASS, written out so that --help need not import numpy
    # (a test keeps the two equal); the minimums are make_demo_dataset's.
    per_class: Annotated[
        int | None, typer.Option(help=r"Images per class (all splits), at least 10. \[default: 600]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives identical files.")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels, at least 32.")] = 256,
) -> None:
    """Write a synthetic real/fake face dataset in the Kaggle "140k Real and Fake Faces" layout (7:2:1)."""
    from dfkd.data.demo import DEMO_DEFAULT_PER_CLASS, make_demo_dataset

    per_class = DEMO_DEFAULT_PER_CLASS if per_class is None else per_class  # not `or`: 0 is an error, not the default
    try:
        root = make_demo_dataset(out, per_class=per_class, seed=seed, size=size)
    except ValueError as error:
        raise fail(str(error)) from None
    out_console.print(f"demo dataset written to [bold]{shown(root)}[/]")


def _print_counts(report: ScanReport) -> None:
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
        + (f" · folders skipped {len(report.skipped)}" if report.skipped else "")
    )
    for path, reason in report.skipped[:20]:
        out_console.print(f"  [yellow]skipped[/] {shown(path)}: {reason}")
    for path, reason in report.rejected[:20]:
        out_console.print(f"  [red]rejected[/] {shown(path)}: {shown(reason)}")
    if len(report.rejected) > 20:
        out_console.print(f"  … and {len(report.rejected) - 20} more (see the .rejected.csv file)")
    for path in report.unlabelled[:10]:
        out_console.print(f"  [yellow]unlabelled[/] {shown(path)}")
    if report.leakage:
        out_console.print(f"[bold yellow]leakage:[/] {len(report.leakage)} identical file groups span splits")
        for digest, members in report.leakage[:10]:
            out_console.print(f"  {digest[:12]}: {', '.join(shown(member) for member in members)}")


def _ratios_option(text: str) -> tuple[float, float, float]:
    """The --ratios value as three ratios, checked before any scanning."""
    from dfkd.data.manifest import parse_ratios

    try:
        return parse_ratios(text)
    except ValueError as error:
        raise fail(f"--ratios: {error}") from None


def _check_scan_outputs(out: Path, verify: bool) -> None:
    """Exit 2 naming --out when the manifest or a file written beside it could not be written (build_manifest's)."""
    from dfkd.data.manifest import sidecar_path

    stem = out.with_suffix("")
    sidecars = [sidecar_path(out), Path(f"{stem}.rejected.csv")] + ([Path(f"{stem}.leakage.csv")] if verify else [])
    if out in sidecars:
        raise fail(f"--out {shown(out)}: a file written beside the manifest has this name; give a .csv name")
    for path in (out, *sidecars):
        problem = unwritable_reason(path)
        if problem is not None:
            where = "" if path == out else f"{shown(path)}, written beside the manifest, "
            raise fail(f"--out {shown(out)}: {where}{shown(problem)}")


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

    ratio_values = _ratios_option(ratios)
    _check_scan_outputs(out, verify)
    try:
        with reported_errors():
            report = build_manifest(
                roots, out, ratios=ratio_values, seed=seed, resplit=resplit, verify=verify, workers=workers
            )
    except OSError as error:  # past the checks above a write can still fail (a full disk): one line, no traceback
        raise fail(f"{shown(error.filename or out)}: {error.strerror or error}", code=1) from None
    _print_counts(report)
    out_console.print(f"manifest written to [bold]{shown(report.manifest_path)}[/] (hash {report.content_hash[:12]})")
    if not report.samples:
        raise fail("no labelled images found", code=1)


COMMANDS = {"make-demo-data": make_demo_data, "scan": scan}
