"""CLI: train and cache-logits — training a teacher or a student, and storing a teacher's logits for distillation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dfkd.commands.common import fail, out_console, reported_errors


def train_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/).")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a key: section.key=value (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (config, metrics, model, checkpoint).")] = Path(
        "runs/train"
    ),
    resume: Annotated[bool, typer.Option(help="Continue from RUN_DIR/last.ckpt exactly where it stopped.")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a run already in RUN_DIR (refused without it, to keep finished runs safe).")
    ] = False,
) -> None:
    """Train a teacher or a student (with KL / MSE distillation) as the config says."""
    from dfkd.config import load_config
    from dfkd.configs import resolve_config
    from dfkd.train import train

    with reported_errors():
        # A preset's name ("demo_teacher") works as its path does; an unknown name lists the presets.
        run_config = load_config(resolve_config(config) if config is not None else None, overrides or [])
        result = train(run_config, out, resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    monitor = run_config.train.monitor
    if not result.model_path.exists():  # e.g. every epoch's val_loss was NaN: no epoch was ever best
        raise fail(f"no model written: no epoch had a finite {monitor} (see {out / 'metrics.csv'})", code=1)
    kept = "best" if result.kept == "best" else "last epoch:"
    out_console.print(
        f"{kept} {monitor} {result.best_value:.4f} at epoch {result.best_epoch}; "
        f"model written to [bold]{result.model_path}[/]"
    )


def cache_logits(
    teacher: Annotated[Path, typer.Option(help="Teacher model file (.safetensors).")],
    manifest: Annotated[Path, typer.Option(help="Manifest CSV from `dfkd scan`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache folder.")],
    resize_size: Annotated[int | None, typer.Option(help="Resize (default: the teacher's).")] = None,
    input_size: Annotated[int | None, typer.Option(help="Crop (default: the teacher's); match the student's.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per teacher forward.")] = 64,
    num_workers: Annotated[int, typer.Option(help="Loader workers.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 …")] = "cpu",
    scaled_decode: Annotated[
        bool,
        typer.Option(
            "--scaled-decode/--full-decode",
            help="Decode JPEGs DCT-scaled to the resize side, as the student's data.scaled_decode (the default).",
        ),
    ] = True,
) -> None:
    """Run the teacher once over every split and store its logits, stamped with data, teacher and transform."""
    from dfkd.distill.logit_cache import compute_logit_cache

    with reported_errors():
        path = compute_logit_cache(
            teacher,
            manifest,
            out,
            resize_size=resize_size,
            input_size=input_size,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            scaled_decode=scaled_decode,
        )
    out_console.print(f"teacher logits cached in [bold]{path}[/]")


def ensemble(
    models: Annotated[list[Path], typer.Argument(help="Two or more trained model files (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ensemble's model file (.safetensors).")],
) -> None:
    """Join trained models into one teacher that averages their fake logits (e.g. the same recipe from several seeds).

    The members must share preprocessing and face crop. The file is a model like any other: distil from it
    (teacher.model), evaluate it, export it. Its threshold is not chosen: `dfkd evaluate --threshold` sets one.
    """
    from dfkd.models import save_model
    from dfkd.models.ensemble import build_ensemble

    with reported_errors():
        model, card = build_ensemble(models)
        save_model(model, out, card)
    out_console.print(
        f"ensemble of {len(models)} models written to [bold]{out}[/]; choose its threshold with "
        f"`dfkd evaluate {out} --manifest MANIFEST --out DIR --threshold fpr=0.05`"
    )


COMMANDS = {"train": train_command, "cache-logits": cache_logits, "ensemble": ensemble}
