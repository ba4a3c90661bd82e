"""CLI: serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dfkd.commands.common import FACE_MODEL_ENV, console, face_model_path, fail


def register(app: typer.Typer) -> None:
    """Add `serve` to the app."""
    app.command("serve")(serve)


def serve(
    model: Annotated[Path, typer.Option("--model", "-m", help="A dfkd model file (.safetensors) or an ONNX export.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 to accept other machines).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes, each with its own model copy.")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="PyTorch CPU threads per worker (default: PyTorch's; cores / workers).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda … (PyTorch models).")] = "cpu",
    faces: Annotated[str, typer.Option(help="Default face mode: auto, none, yunet, centerface or mtcnn.")] = "auto",
    face_model: Annotated[
        Path | None, typer.Option(help=f"YuNet ONNX file for faces=yunet / auto (default: ${FACE_MODEL_ENV}).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Require this key in the X-API-Key header of /v1 requests (prefer the env var: argv is visible).",
            envvar="DFKD_API_KEY",
        ),
    ] = None,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body, MiB.")] = 20.0,
    max_files: Annotated[int, typer.Option(help="Most files per request.")] = 16,
    max_pixels: Annotated[int, typer.Option(help="Most pixels per image (decompression bombs).")] = 40_000_000,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before a 504.")] = 30.0,
    batch_window_ms: Annotated[float, typer.Option(help="How long to gather concurrent images into a batch.")] = 5.0,
    max_batch: Annotated[int, typer.Option(help="Most images per model call.")] = 32,
) -> None:
    """Serve the model over HTTP: POST /v1/detect, GET /v1/model, /healthz, the upload page at / and docs at /docs."""
    from dfkd.inference.faces import FaceDetectorUnavailable
    from dfkd.models import ModelFileError
    from dfkd.serve.server import ServeConfig, build_app, run_server

    if workers < 1:
        raise fail(f"--workers must be at least 1, got {workers}")
    if not model.is_file():
        raise fail(f"{model}: model file not found")
    config = ServeConfig(
        model=str(model),
        device=device,
        faces=faces,
        face_model=face_model_path(face_model),
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
        max_files=max_files,
        max_pixels=max_pixels,
        timeout_s=timeout,
        api_key=api_key or None,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
    )
    try:
        # Load here even for several workers, so a bad model or option fails once with a clear message.
        service = build_app(config)
    except (ModelFileError, FaceDetectorUnavailable, ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    console.print(f"serving [bold]{model}[/] on http://{shown}:{port}/ (API docs at /docs)")
    if api_key:
        console.print("requests to /v1 need the X-API-Key header")
    if workers > 1:
        del service  # each worker process loads its own copy
        run_server(config)
    else:
        run_server(config, app=service)
