"""``dfkd calibrate``: a model file whose threshold calls at most a given share of a user's genuine photos fake."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dfkd.commands.common import (
    FaceModelOption,
    FacesOption,
    ModelOption,
    check_output,
    console,
    face_model_path,
    fail,
    model_or_bundled,
    out_console,
    reported_errors,
    shown,
)

MAX_FAILED_NAMED = 10


def _percent(share: float) -> str:
    return "–" if math.isnan(share) else f"{100 * share:.1f} %"


def calibrate(
    reals: Annotated[
        list[Path],
        typer.Argument(help="Genuine photos, folders (recursive) and videos of the collection.", readable=False),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Model file to write (.safetensors, or .onnx for an ONNX model).")
    ],
    model: ModelOption = None,
    max_fpr: Annotated[
        float, typer.Option(help="Largest share of the genuine photos the new threshold may call fake.")
    ] = 0.05,
    fakes: Annotated[
        list[Path] | None,
        typer.Option(help="Known fakes of the same collection (repeatable): only reported, to show what it costs."),
    ] = None,
    faces: FacesOption = "auto",
    face_model: FaceModelOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 32,
    device: Annotated[str, typer.Option(help="cpu, cuda … (PyTorch models).")] = "cpu",
) -> None:
    """Set a model's threshold from genuine photos of your own collection and write the model with it.

    Use unedited photos from where the images to check come from: they are scored as `dfkd detect` scores them.
    """
    from dfkd.inference.backends import is_onnx_file
    from dfkd.inference.calibrate import calibrate as choose_threshold
    from dfkd.inference.calibrate import save_calibrated
    from dfkd.inference.detector import Detector

    if not 0.0 < max_fpr < 1.0:
        raise fail(f"--max-fpr must be between 0 and 1 (a share of the genuine photos), got {max_fpr:g}")
    check_output("--out", out)
    with reported_errors():
        model = model_or_bundled(model)
        if is_onnx_file(model) != is_onnx_file(out):
            kind = "an ONNX file (.onnx)" if is_onnx_file(model) else "a dfkd model file (.safetensors)"
            raise fail(f"--out {shown(out)}: the model is {kind}; write the calibrated copy in the same format")
        detector = Detector.load(
            model, device=device, faces=faces, face_model=face_model_path(face_model), batch_size=batch_size
        )
        calibration = choose_threshold(detector, reals, max_fpr, fakes=fakes or (), faces=faces)
    for item, reason in calibration.failed[:MAX_FAILED_NAMED]:
        console.print(f"[yellow]skipped[/] {shown(item)}: {escape(reason)}")
    if len(calibration.failed) > MAX_FAILED_NAMED:
        console.print(f"[yellow]… and {len(calibration.failed) - MAX_FAILED_NAMED} more items could not be scored[/]")
    n_reals = len(calibration.real_scores)
    if calibration.too_few:
        console.print(
            f"[yellow]warning:[/] {n_reals} genuine photos are too few for a share of {max_fpr:g}: none of them may be "
            f"called fake, so the threshold sits just above the highest score; give at least {math.ceil(1 / max_fpr)}"
            " (the more, the steadier the threshold)"
        )
    before, after = calibration.previous_threshold, calibration.threshold
    out_console.print(
        f"{n_reals} genuine photos scored: the model's threshold {before:.4f} calls "
        f"{_percent(calibration.share_called_fake(calibration.real_scores, before))} of them fake; "
        f"the new threshold {after:.4f} calls {_percent(calibration.share_called_fake(calibration.real_scores))}"
    )
    if len(calibration.fake_scores):
        out_console.print(
            f"{len(calibration.fake_scores)} known fakes: "
            f"{_percent(calibration.share_called_fake(calibration.fake_scores, before))} caught before, "
            f"{_percent(calibration.share_called_fake(calibration.fake_scores))} now"
        )
    with reported_errors():
        try:
            save_calibrated(model, out, calibration)
        except OSError as error:
            raise fail(f"--out {shown(out)}: cannot write ({error.strerror or error})", code=1) from None
    out_console.print(f"written to [bold]{shown(out)}[/] (use it with --model)")


COMMANDS = {"calibrate": calibrate}
