"""CLI: train, cache-logits, ensemble and adapt — training a teacher or a student, storing a teacher's logits for
distillation, joining models, and fine-tuning a model on a collection's genuine photos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dfkd.commands.common import (
    FaceModelOption,
    ModelOption,
    check_output,
    face_model_path,
    fail,
    model_or_bundled,
    out_console,
    reported_errors,
    shown,
)
from dfkd.experiments.adapt import DEFAULT_ALPHA


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
    out_console.print(f"teacher logits cached in [bold]{shown(path)}[/]")


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


def adapt(
    photos: Annotated[
        list[Path], typer.Argument(help="Folders of genuine photos of the collection (each searched recursively).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The adapted model file (.safetensors).")],
    model: ModelOption = None,
    face_model: FaceModelOption = None,
    work: Annotated[
        Path | None, typer.Option(help="Folder for the face crops and the training run (default: beside --out).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the photos.")] = 30,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    alpha: Annotated[
        float,
        typer.Option(
            help="Share of the loss taught by the model as it was (0: photos and blends only; lower: more of "
            "the collection's fakes caught, less kept of other fakes)."
        ),
    ] = DEFAULT_ALPHA,
    seed: Annotated[int, typer.Option(help="Seed of the validation draw and of training.")] = 42,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a recipe key: section.key=value (repeatable).")
    ] = None,
) -> None:
    """Fine-tune a model on genuine photos of your collection and their self-blended fakes; no fake is needed.

    The model as it was teaches alongside, so it keeps what it knew of other fakes.
    A fifth of the photos sets the threshold (at most 5 % of them called fake).
    """
    from dfkd.experiments.adapt import adapt_model

    check_output("--out", out)
    work = work if work is not None else out.with_name(f"{out.stem}.adapt")
    with reported_errors():
        model = model_or_bundled(model)
        result = adapt_model(
            model,
            photos,
            out,
            work=work,
            face_model=face_model_path(face_model),
            epochs=epochs,
            lr=lr,
            alpha=alpha,
            seed=seed,
            overrides=overrides,
        )
    if result.skipped:
        out_console.print(f"photos without a usable face, left out: {len(result.skipped)} (see {shown(work)})")
    out_console.print(
        f"adapted on {result.n_train} genuine photos ({result.n_val} set the threshold, {result.threshold:.4f}); "
        f"written to [bold]{shown(out)}[/] (use it with --model)"
    )


COMMANDS = {"train": train_command, "cache-logits": cache_logits, "ensemble": ensemble, "adapt": adapt}
