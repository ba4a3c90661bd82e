"""CLI: sweep — grid or TPE search over distillation settings on a shared, resumable Optuna study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dfkd.commands.common import fail, out_console, shown, training_errors


def sweep(
    config: Annotated[Path, typer.Option("--config", "-c", help="Sweep YAML (see configs/seed_sweep.yaml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep folder: trials/, sweep.csv, sweep.md, best.yaml.")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a key of every trial: section.key=value.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna RDB URL shared by every worker (default sqlite:///OUT/sweep.db; postgresql://… "
            "works the same)."
        ),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="Finished trials the study should hold (grid: default and cap = grid size)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes here, all on the same study.")] = 1,
) -> None:
    """Run, resume or join a sweep; rank trials on the validation split and write the best config as best.yaml."""
    from dfkd.experiments.sweep import run_sweep

    try:
        summary = run_sweep(config, out, overrides=overrides or [], storage=storage, n_trials=n_trials, workers=workers)
    except training_errors() as error:
        raise fail(str(error)) from None
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise fail(str(error), code=1) from None
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command again to resume (finished trials are kept)", code=130) from None
    out_console.print(
        f"{summary.count('complete')} complete, {summary.count('pruned')} pruned, {summary.count('fail')} failed"
    )
    if summary.best_number is not None:
        out_console.print(f"best: trial {summary.best_number} (validation {summary.best_value:.4f})")
        out_console.print(
            f"best config: [bold]{shown(summary.best_yaml)}[/] (dfkd train --config {shown(summary.best_yaml)})"
        )
    out_console.print(f"table: [bold]{shown(summary.out / 'sweep.md')}[/]")


COMMANDS = {"sweep": sweep}
