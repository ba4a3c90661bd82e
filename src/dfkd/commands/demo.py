"""CLI: demo — the main job end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for data, runs and the report.")] = Path("runs/demo"),
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="Your own dataset roots instead of the synthetic set.")
    ] = None,
    faces: Annotated[
        str, typer.Option(help="crop: face-crop --data images first; none: they are face crops.")
    ] = "none",
    face_model: Annotated[Path | None, typer.Option(help="YuNet .onnx face model (default: $DFKD_FACE_MODEL).")] = None,
    per_class: Annotated[int | None, typer.Option(help="Synthetic images per class.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a key of every training config.")
    ] = None,
) -> None:
    """Make data, train a teacher, cache its logits, train students (no KD, KD-KL, KD-MSE), evaluate, report."""
    from dfkd.commands.common import fail, out_console, reported_errors, shown
    from dfkd.experiments.demo import run_demo

    if faces not in ("crop", "none"):
        raise fail(f"--faces must be 'crop' or 'none', got {faces!r}")
    with reported_errors():
        result = run_demo(
            out,
            data_roots=data,
            faces=faces,
            face_model=str(face_model) if face_model else None,
            per_class=per_class,
            overrides=overrides or [],
        )
    total = sum(result.timings.values())
    out_console.print(f"demo finished ({total:.0f} s of new work); report: [bold]{shown(result.report)}[/]")


COMMANDS = {"demo": demo}
