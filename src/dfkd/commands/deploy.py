"""``dfkd export`` (ONNX, INT8) and ``dfkd detect`` (images, folders, videos, cameras and streams)."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

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
    write_output,
)
from dfkd.utils import atomic_write

MAX_TABLE_ROWS = 200
MAX_IGNORED_NAMED = 10
# When a run scores at least this many inputs and calls at least this share fake, `detect` points to `calibrate`: a
# detector calls a quarter to two fifths of a genuine collection it never saw fake (docs/results/generalisation.md),
# against the ~5 % its threshold was set for, and a folder of one's own photos is the usual way to meet one.
CALIBRATE_HINT_MIN_SCORED = 20
CALIBRATE_HINT_SHARE = 0.2
logger = logging.getLogger(__name__)


def export(
    model: Annotated[Path, typer.Argument(help="dfkd model file (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write (the INT8 one with --int8).")],
    format: Annotated[str, typer.Option("--format", help="Export format (onnx).")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="Static INT8 quantisation (needs --calibration).")] = False,
    calibration: Annotated[
        Path | None, typer.Option(help="Manifest CSV: train images calibrate INT8, val images check it.")
    ] = None,
    check_images: Annotated[
        list[Path] | None,
        typer.Option(help="Images, folders or a manifest for the fp32 parity check (default: --calibration's val)."),
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    n_calibration: Annotated[int, typer.Option(help="Calibration images for INT8.")] = 256,
    max_eval: Annotated[int, typer.Option(help="Val images for the INT8 accuracy check (0: all).")] = 5000,
    quantize_stem: Annotated[
        bool,
        typer.Option(help="Quantise the image-reading first conv too (faster; can erase pixel-level traces)."),
    ] = False,
) -> None:
    """Export a model to ONNX (dynamic batch, metadata inside) with a parity check; optionally quantise to INT8."""

    if format.lower() != "onnx":
        raise fail(f"unsupported format {format!r}: only onnx")
    if int8 and calibration is None:
        raise fail("--int8 needs --calibration MANIFEST (its train images calibrate, its val images check)")
    from dfkd.deploy.onnx import export_onnx, quantize_int8

    fp32_out = out.with_name(f"{out.stem}.fp32.onnx") if int8 else out
    check_output("--out", out)
    if int8:
        check_output("--out", fp32_out)  # the fp32 step's file, written beside the INT8 one
    # Read before anything is written: a bad manifest found after the fp32 export would leave a half-done result.
    calibration_manifest = _calibration_manifest(calibration) if calibration is not None else None
    checks: list[Any] | None = list(check_images) if check_images else ([calibration_manifest] if calibration else None)
    with reported_errors():
        report = export_onnx(model, fp32_out, opset=opset, check_images=checks)
        parity = report["parity"]
        out_console.print(
            f"fp32 ONNX written to [bold]{fp32_out}[/] ({report['size_bytes'] / 1e6:.2f} MB); parity on "
            f"{parity['n_images']} {parity['images']}: max |Δ logit| = {parity['max_abs_logit_diff']:.2e} "
            f"({'ok' if parity['passed'] else 'FAILED'}, tolerance {parity['tolerance']:.0e})"
        )
        passed = parity["passed"]
        if int8:
            int8_report = quantize_int8(
                fp32_out,
                out,
                calibration,
                n_calibration=n_calibration,
                max_eval=max_eval or None,
                fp32_stem=not quantize_stem,
            )
            out_console.print(
                f"INT8 ONNX written to [bold]{shown(out)}[/] ({int8_report['size_bytes'] / 1e6:.2f} MB); "
                f"val accuracy on "
                f"{int8_report['n_images']} images: fp32 {int8_report['accuracy_fp32']:.2f} %, INT8 "
                f"{int8_report['accuracy_int8']:.2f} % (Δ {int8_report['accuracy_delta_points']:+.2f} points, "
                f"{'ok' if int8_report['passed'] else 'FAILED'}, tolerance {int8_report['tolerance_points']} point); "
                f"agreement {int8_report['agreement']:.2f} %"
            )
            passed = passed and int8_report["passed"]
    if not passed:
        raise fail("the export check failed (the file was written; see above)", code=1)


def _calibration_manifest(path: Path) -> Any:
    """The --calibration manifest, read and checked: exit 2 naming the option when it cannot calibrate and check."""
    from dfkd.data.manifest import read_manifest

    try:  # read_manifest's errors name the file and the reason (a folder, a bad row …)
        manifest = read_manifest(path)
    except (ValueError, FileNotFoundError) as error:
        raise fail(f"--calibration: {shown(str(error))}") from None
    if not manifest.samples:
        raise fail(f"--calibration {shown(path)}: has no images")
    if not manifest.split("val"):  # train (or val) images calibrate; val images check INT8 against fp32
        raise fail(f"--calibration {shown(path)}: has no val images (they check the export)")
    return manifest


def _display_available() -> bool:
    from dfkd.inference.live import gui_available

    has_display = sys.platform in ("win32", "darwin") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    return has_display and gui_available()


def _print_results(results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="deepfake detection")
    for column, justify in (("input", "left"), ("kind", "left"), ("status", "left"), ("label", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    table.add_column("fake prob", justify="right")
    table.add_column("faces", justify="right")
    for result in results[:MAX_TABLE_ROWS]:
        label = result.get("label") or ""
        style = "red" if label == "fake" else "green" if label == "real" else ""
        faces = len(result.get("faces", []))
        is_video = result.get("kind") == "video"
        faces_text = f"{faces} ({result.get('n_frames', 0)} frames)" if is_video else str(faces)
        table.add_row(
            shown(result["input"]),  # a file name is text, not markup: `x[/y].jpg` would stop the run
            result.get("kind", "image"),
            result["status"],
            f"[{style}]{label}[/]" if style else label,
            "" if result.get("fake_prob") is None else f"{result['fake_prob']:.3f}",
            faces_text,
        )
    out_console.print(table)
    if len(results) > MAX_TABLE_ROWS:
        out_console.print(f"… and {len(results) - MAX_TABLE_ROWS} more rows (see --json / --csv)")
    errors = [result for result in results if result["status"] == "error"]
    for result in errors:
        console.print(
            f"[red]unreadable[/] {shown(result['input'])}: {escape(result['error'])}", soft_wrap=True, highlight=False
        )


def _print_fake_share(summary: dict[str, int], threshold: float) -> None:
    """How many scored inputs were called fake; with many of many, how to set a threshold on one's genuine photos."""
    from dfkd.inference.report import SCORED_STATUSES

    scored, n_fake = sum(summary[status] for status in SCORED_STATUSES), summary["called_fake"]
    if not scored:
        return
    out_console.print(f"{n_fake} of {scored} scored inputs called fake (threshold {threshold:.3f})")
    if scored >= CALIBRATE_HINT_MIN_SCORED and n_fake >= CALIBRATE_HINT_SHARE * scored:
        console.print(
            f"[yellow]{n_fake / scored:.0%} called fake.[/] If these are genuine photos of one collection "
            "(a camera, an archive), the detector may not know their look: unseen genuine collections had 25–40 % "
            "called fake in dfkd's tests. `dfkd calibrate FOLDER --out mine.safetensors` on genuine photos of it "
            "sets a threshold for them (docs/results/calibration.md).",
            soft_wrap=True,
            highlight=False,
        )


def _write_explanations(detector: Any, results: list[dict[str, Any]], folder: Path, faces: str) -> int:
    written = 0
    for index, result in enumerate(results):
        if result.get("kind") != "image" or result["status"] == "error":
            continue
        path = folder / f"{index:04d}_{Path(result['input']).stem}_gradcam.png"
        try:
            overlay = detector.explain(result["input"], faces=faces)
            with atomic_write(path, "wb") as handle:  # a killed run leaves no half-written overlay
                overlay.save(handle, format="PNG")
        except Exception as error:  # one odd image (or a full disk) must not stop the others
            logger.warning("no Grad-CAM for %s: %s", result["input"], error)
            continue
        result["explanation"] = str(path)
        written += 1
    return written


def _log_ignored(ignored: list[str]) -> None:
    """Name the files a folder scan skipped (not an image or video by extension), the first few of them."""
    if not ignored:
        return
    names = ", ".join(shown(name) for name in ignored[:MAX_IGNORED_NAMED])
    more = f" and {len(ignored) - MAX_IGNORED_NAMED} more" if len(ignored) > MAX_IGNORED_NAMED else ""
    logger.info("ignored (not an image or video by its extension): %s%s", names, more)


def _check_detect_options(fps: float, max_frames: int | None) -> None:
    # NaN passes every comparison, so finiteness is asked first; 0 or less would silently score every frame.
    if not (math.isfinite(fps) and fps > 0):
        raise fail(f"--fps {fps}: must be a number of frames per second > 0")
    if max_frames is not None and max_frames < 1:
        raise fail(f"--max-frames {max_frames}: must be at least 1")


def _run_live(detector: Any, source: int | str, faces: str, window: bool | None, max_frames: int | None) -> None:
    from dfkd.inference.live import run_live

    show = _display_available() if window is None else window

    def emit(record: dict[str, Any]) -> None:
        if not show:  # JSON lines on stdout: the headless output format
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()

    try:
        summary = run_live(detector, source, show=show, emit=emit, max_frames=max_frames, faces=faces)
    except RuntimeError as error:
        raise fail(str(error)) from None
    console.print(
        f"live: {summary['scored']} frames scored, {summary['dropped']} skipped to keep up, {summary['fps']:.1f} FPS"
    )
    if summary["scored"] == 0:
        raise fail("no frame could be read from the source", code=1)


def detect(
    model: ModelOption = None,
    # readable=False: click would refuse the whole run for one unreadable path; collect_inputs reports it as an item.
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Images, folders (recursive) and videos.", readable=False)
    ] = None,
    faces: FacesOption = "auto",
    face_model: FaceModelOption = None,
    # Outputs are replaced, never read: click's default readability check would only refuse a file it need not read.
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.", readable=False)] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write one CSV row per input here.", readable=False)
    ] = None,
    explain: Annotated[Path | None, typer.Option(help="Write Grad-CAM overlays of images into this folder.")] = None,
    fps: Annotated[float, typer.Option(help="Video frames scored per second of video (> 0).")] = 2.0,
    max_frames: Annotated[
        int | None, typer.Option(help="At most this many frames per video / live source (≥ 1).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Images per model batch (at most; memory does not grow with it).")
    ] = 32,
    workers: Annotated[
        int | None,
        typer.Option(help="Threads decoding and finding faces while the model scores (0: none; default: cores, ≤ 4)."),
    ] = None,
    full_decode: Annotated[
        bool,
        typer.Option(
            "--full-decode", help="Decode every photo at full size (the reference path; slower, same scores ± 0.05)."
        ),
    ] = False,
    camera: Annotated[int | None, typer.Option(help="Live: camera index (e.g. 0).")] = None,
    stream: Annotated[str | None, typer.Option(help="Live: stream URL (or a video file played in real time).")] = None,
    window: Annotated[
        bool | None, typer.Option("--window/--no-window", help="Live: overlay window (default: when a display exists).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda … (PyTorch models).")] = "cpu",
    margin: Annotated[
        float | None,
        typer.Option(help="Face margin (share of the face box on each side); default: the model card's face crop."),
    ] = None,
) -> None:
    """Score images, folders and videos (or a live camera / stream) for deepfakes; exit 1 when nothing worked."""
    from dfkd.inference.backends import let_idle_threads_sleep
    from dfkd.inference.detector import Detector

    let_idle_threads_sleep()  # before any torch import: the model's idle threads must not take the workers' cores

    live_source: int | str | None = camera if camera is not None else stream
    if not paths and live_source is None:
        raise fail("give PATH(s) to score, or --camera / --stream for live detection")
    _check_detect_options(fps, max_frames)
    if live_source is not None:  # live mode prints JSON lines or shows a window: it would ignore these silently
        if camera is not None and stream is not None:
            raise fail("give --camera or --stream, not both")
        given = {"PATH": bool(paths), "--json": json_out is not None, "--csv": csv_out is not None}
        given["--explain"] = explain is not None
        if unused := [name for name, on in given.items() if on]:
            raise fail(f"live detection (--camera / --stream) takes no {', '.join(unused)}: run those separately")
    else:  # before the model loads and the inputs are scored
        check_output("--json", json_out)
        check_output("--csv", csv_out)
        check_output("--explain", explain, folder=True)
    with reported_errors():
        model = model_or_bundled(model)
        detector = Detector.load(
            model,
            device=device,
            faces=faces,
            face_model=face_model_path(face_model),
            batch_size=batch_size,
            margin=margin,
            workers=workers,
            decode="full" if full_decode else "scaled",
        )
    if live_source is not None:
        _run_live(detector, live_source, faces, window, max_frames)
        return

    from dfkd.inference.report import build_report, summarise, write_report_csv, write_report_json
    from dfkd.inference.run import detect_paths

    results, collected = detect_paths(detector, paths or [], faces=faces, sample_fps=fps, max_frames=max_frames)
    all_written = True
    if explain is not None:
        if detector.backend.kind != "torch":
            console.print("[yellow]--explain needs the PyTorch model file; skipped for an ONNX model[/]")
        elif write_output("--explain", explain, lambda: explain.mkdir(parents=True, exist_ok=True)):
            written = _write_explanations(detector, results, explain, faces)
            out_console.print(f"{written} Grad-CAM overlays written to [bold]{shown(explain)}[/]")
        else:
            all_written = False
    _print_results(results)
    summary = summarise(results)
    ignored = len(collected.ignored)
    out_console.print(
        f"{summary['n_inputs']} inputs: {summary['ok']} ok, {summary['no_face']} without a face (scored whole), "
        f"{summary['error']} unreadable" + (f"; {ignored} other files ignored" if ignored else "")
    )
    _log_ignored(collected.ignored)
    _print_fake_share(summary, detector.threshold)
    if json_out is not None:
        report = build_report(
            results,
            model=str(model),
            card=detector.card,
            faces=detector.auto_faces if faces == "auto" else faces,
            backend=detector.backend.kind,
            margin=detector.margin,
        )
        if write_output("--json", json_out, lambda: write_report_json(json_out, report)):
            out_console.print(f"JSON report written to [bold]{shown(json_out)}[/]")
        else:
            all_written = False
    if csv_out is not None:
        if write_output("--csv", csv_out, lambda: write_report_csv(csv_out, results)):
            out_console.print(f"CSV written to [bold]{shown(csv_out)}[/]")
        else:
            all_written = False
    if summary["ok"] + summary["no_face"] == 0:
        raise fail("nothing could be processed", code=1)
    if not all_written:  # the results were printed, but a file asked for is missing
        raise typer.Exit(1)


COMMANDS = {"export": export, "detect": detect}
