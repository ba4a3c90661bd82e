"""CLI: serve."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from dfkd.commands.common import (
    FACE_MODEL_ENV,
    ModelOption,
    console,
    face_model_path,
    fail,
    model_or_bundled,
    reported_errors,
    shown,
)
from dfkd.serve.settings import API_KEY_ENV, DEFAULT_LIMITS, MIB, ServeLimits, ServeSettings


def limit_help(name: str) -> str:
    """The help text of a limit option: the description of its ``ServeLimits`` field."""
    return str(ServeLimits.model_fields[name].description)


def serve(
    model: ModelOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 to accept other machines).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes, each with its own model copy.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads per worker, for both the model runtime (PyTorch's or onnxruntime's) and the pipeline's "
            "decoding (default: the runtime's own and one decoder per core, at most 4; cores / workers with several "
            "workers)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda … (PyTorch models).")] = "cpu",
    faces: Annotated[str, typer.Option(help="Default face mode: auto, none, yunet, centerface or mtcnn.")] = "auto",
    face_model: Annotated[
        Path | None, typer.Option(help=f"YuNet ONNX file for faces=yunet / auto (default: ${FACE_MODEL_ENV}).")
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(help="Face margin (share of the face box on each side); default: the model card's face crop."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Require this key in the X-API-Key header of /v1 requests (prefer the env var: argv is visible).",
            envvar=API_KEY_ENV,
        ),
    ] = None,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body, MiB.")] = DEFAULT_LIMITS.max_request_bytes
    / MIB,
    max_files: Annotated[int, typer.Option(help=limit_help("max_files"))] = DEFAULT_LIMITS.max_files,
    max_pixels: Annotated[int, typer.Option(help=limit_help("max_pixels"))] = DEFAULT_LIMITS.max_pixels,
    timeout: Annotated[float, typer.Option(help=limit_help("timeout_s"))] = DEFAULT_LIMITS.timeout_s,
    batch_window_ms: Annotated[
        float, typer.Option(help=limit_help("batch_window_ms"))
    ] = DEFAULT_LIMITS.batch_window_ms,
    max_batch: Annotated[int, typer.Option(help=limit_help("max_batch"))] = DEFAULT_LIMITS.max_batch,
    max_request_pixels: Annotated[
        int, typer.Option(help=limit_help("max_request_pixels"))
    ] = DEFAULT_LIMITS.max_request_pixels,
    max_pixels_in_flight: Annotated[
        int, typer.Option(help=limit_help("max_pixels_in_flight"))
    ] = DEFAULT_LIMITS.max_pixels_in_flight,
    max_queue: Annotated[int, typer.Option(help=limit_help("max_queue"))] = DEFAULT_LIMITS.max_queue,
    header_timeout: Annotated[
        float, typer.Option(help=limit_help("header_timeout_s"))
    ] = DEFAULT_LIMITS.header_timeout_s,
    keep_alive: Annotated[float, typer.Option(help=limit_help("keep_alive_s"))] = DEFAULT_LIMITS.keep_alive_s,
    max_connections: Annotated[int, typer.Option(help=limit_help("max_connections"))] = DEFAULT_LIMITS.max_connections,
) -> None:
    """Serve the model over HTTP: POST /v1/detect, GET /v1/model, /healthz, the upload page at / and docs at /docs."""
    from dfkd.inference.backends import let_idle_threads_sleep
    from dfkd.serve.server import build_app, run_server

    let_idle_threads_sleep()  # before any torch import (and inherited by worker processes): decoding shares the cores

    model = model_or_bundled(model)
    if not math.isfinite(max_request_mb) or max_request_mb <= 0:
        raise fail(f"--max-request-mb must be a positive number of MiB, got {max_request_mb}")
    try:
        settings = ServeSettings(
            model=str(model),
            device=device,
            faces=faces,
            face_model=face_model_path(face_model),
            margin=margin,
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            api_key=api_key or None,
            log_level=uvicorn_log_level(),
            limits=ServeLimits(
                max_request_bytes=int(max_request_mb * MIB),
                max_files=max_files,
                max_pixels=max_pixels,
                timeout_s=timeout,
                batch_window_ms=batch_window_ms,
                max_batch=max_batch,
                max_request_pixels=max_request_pixels,
                max_pixels_in_flight=max_pixels_in_flight,
                max_queue=max_queue,
                header_timeout_s=header_timeout,
                keep_alive_s=keep_alive,
                max_connections=max_connections,
            ),
        )
    except ValidationError as error:
        raise fail(settings_problems(error)) from None
    if not model.is_file():
        raise fail(f"{model}: model file not found")
    with reported_errors():
        # Load here even for several workers, so a bad model or option fails once with a clear message.
        service = build_app(settings)
    console.print(f"serving [bold]{shown(model)}[/] on {listening_on(host, port)} (API docs at /docs)")
    if api_key:
        console.print("requests to /v1 need the X-API-Key header")
    if workers > 1:
        del service  # each worker process loads its own copy
        run_server(settings)
    else:
        run_server(settings, app=service)


def uvicorn_log_level() -> str:
    """uvicorn's log level under dfkd's own (set by the root options): ``warning`` with ``dfkd -q``, so that neither
    uvicorn's startup lines nor its access lines print (``run_server`` drops the access log below info)."""
    return "warning" if logging.getLogger().getEffectiveLevel() >= logging.WARNING else "info"


def listening_on(host: str, port: int) -> str:
    """Where the service listens, in words: ``http://127.0.0.1:8000/``, or ``all interfaces (0.0.0.0), port 8000``
    for a wildcard address, which accepts other machines too."""
    if host in ("0.0.0.0", "::", ""):
        return f"all interfaces ({host or '0.0.0.0'}), port {port}"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def settings_problems(error: ValidationError) -> str:
    """The settings' validation errors as one line that names each option (``--max-files: Input should be …``)."""
    options = {
        "max_request_bytes": "max_request_mb",
        "timeout_s": "timeout",
        "header_timeout_s": "header_timeout",
        "keep_alive_s": "keep_alive",
    }
    problems = []
    for item in error.errors():
        name = str(item["loc"][-1]) if item["loc"] else "settings"
        problems.append(f"--{options.get(name, name).replace('_', '-')}: {item['msg']}")
    return "; ".join(problems)


COMMANDS = {"serve": serve}
