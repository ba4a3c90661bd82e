"""Running the service on uvicorn: one process, or ``workers`` processes that each load the model.

Several workers need an import string for uvicorn, so the settings travel to them as JSON in the environment
variable ``DFKD_SERVE_CONFIG`` and ``app_from_env`` (a uvicorn factory) rebuilds the app in each.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from dfkd.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

CONFIG_ENV = "DFKD_SERVE_CONFIG"


def build_app(settings: ServeSettings) -> FastAPI:
    """Load the model and build the app with the settings' limits; an ONNX model never imports torch."""
    from dfkd.inference import Detector
    from dfkd.inference.backends import load_backend
    from dfkd.serve.app import create_app

    detector = Detector(
        load_backend(Path(settings.model), device=settings.device, threads=settings.threads),
        faces=settings.faces,
        face_model=settings.face_model,
        margin=settings.margin,
        workers=settings.threads,  # the pipeline's decoding threads share the same cores
    )
    return create_app(detector, settings.limits, api_key=settings.api_key)


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: the app of the settings in ``DFKD_SERVE_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set (start the service with `dfkd serve`)")
    settings = ServeSettings.model_validate_json(text)
    if settings.workers > 1 and not settings.threads:  # share the cores between the workers instead of oversubscribing
        settings = settings.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // settings.workers)})
    return build_app(settings)


def run_server(settings: ServeSettings, app: FastAPI | None = None) -> None:
    """Serve until interrupted (blocking); ``app``, when given, is ``build_app(settings)`` (one worker only)."""
    import uvicorn

    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": settings.log_level}
    if settings.workers > 1:
        os.environ[CONFIG_ENV] = settings.model_dump_json()
        uvicorn.run("dfkd.serve.server:app_from_env", factory=True, workers=settings.workers, **common)
    else:
        uvicorn.run(app or build_app(settings), **common)
