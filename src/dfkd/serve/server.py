"""Running the service on uvicorn: one process, or ``workers`` processes that each load the model.

Several workers need an import string for uvicorn, so the settings travel to them as JSON in the environment
variable ``DFKD_SERVE_CONFIG`` and ``app_from_env`` (a uvicorn factory) rebuilds the app in each.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from dfkd.serve.app import DEFAULT_MAX_FILES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_TIMEOUT_S

logger = logging.getLogger(__name__)

CONFIG_ENV = "DFKD_SERVE_CONFIG"
API_KEY_ENV = "DFKD_API_KEY"


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``dfkd serve`` needs: the model, how to detect faces, where to listen and the limits."""

    model: str
    device: str = "cpu"
    faces: str = "auto"
    face_model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout_s: float = DEFAULT_TIMEOUT_S
    api_key: str | None = None
    batch_window_ms: float = 5.0
    max_batch: int = 32
    log_level: str = "info"

    def to_json(self) -> str:
        """The config as JSON (for worker processes)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """The config from ``to_json``'s output."""
        return cls(**json.loads(text))


def build_app(config: ServeConfig) -> FastAPI:
    """Load the model (``Detector.load``) and build the app with the config's limits."""
    from dfkd.inference import Detector

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)

    detector = Detector.load(Path(config.model), device=config.device, faces=config.faces, face_model=config.face_model)
    from dfkd.serve.app import create_app

    return create_app(
        detector,
        max_request_bytes=config.max_request_bytes,
        max_files=config.max_files,
        max_pixels=config.max_pixels,
        timeout_s=config.timeout_s,
        api_key=config.api_key,
        batch_window_ms=config.batch_window_ms,
        max_batch=config.max_batch,
    )


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: the app of the config in ``DFKD_SERVE_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set (start the service with `dfkd serve`)")
    config = ServeConfig.from_json(text)
    if config.workers > 1 and not config.threads:  # share the cores between the workers instead of oversubscribing
        config = dataclasses.replace(config, threads=max(1, (os.cpu_count() or 1) // config.workers))
    return build_app(config)


def run_server(config: ServeConfig, app: FastAPI | None = None) -> None:
    """Serve until interrupted (blocking); ``app``, when given, is ``build_app(config)`` already built (one worker)."""
    import uvicorn

    common: dict[str, Any] = {"host": config.host, "port": config.port, "log_level": config.log_level}
    if config.workers > 1:
        os.environ[CONFIG_ENV] = config.to_json()
        uvicorn.run("dfkd.serve.server:app_from_env", factory=True, workers=config.workers, **common)
    else:
        uvicorn.run(app or build_app(config), **common)
