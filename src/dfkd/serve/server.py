"""Running the service on uvicorn: one process, or ``workers`` processes that each load the model.

Several workers need an import string for uvicorn, so the settings travel to them as JSON in the environment
variable ``DFKD_SERVE_CONFIG`` and ``app_from_env`` (a uvicorn factory) rebuilds the app in each.

Connections are bounded too (``uvicorn_options``): a client must send a request's headers within
``header_timeout_s`` (uvicorn alone waits forever for a slow-loris client), an idle keep-alive connection is closed
after ``keep_alive_s``, headers above ``MAX_HEADER_BYTES`` are refused, and beyond ``max_connections`` open
connections or requests uvicorn answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from dfkd.serve.settings import ServeLimits, ServeSettings

logger = logging.getLogger(__name__)

CONFIG_ENV = "DFKD_SERVE_CONFIG"
MAX_HEADER_BYTES = 16 * 1024  # request line and headers together (h11's incomplete-event limit)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers do not arrive within
    ``header_timeout_s`` (set by ``uvicorn_options``: a class attribute, since worker processes rebuild it)."""

    header_timeout_s: float = ServeLimits().header_timeout_s
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._on_header_timeout, self.cycle)

    def _on_header_timeout(self, cycle_then: object) -> None:
        self._header_timer = None
        waiting = self.cycle is cycle_then and (self.cycle is None or self.cycle.response_complete)
        if waiting and not self.transport.is_closing():  # no request began since: the headers are overdue
            logger.info("closed a connection from %s: no complete headers in %g s", self.client, self.header_timeout_s)
            if self.conn.our_state not in (h11.ERROR, h11.CLOSED):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def uvicorn_options(limits: ServeLimits) -> dict[str, Any]:
    """uvicorn's settings for ``limits``' connection bounds (header and keep-alive timeouts, connections)."""
    HeaderTimeoutProtocol.header_timeout_s = limits.header_timeout_s
    return {
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": limits.keep_alive_s,
        "limit_concurrency": limits.max_connections,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }


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
    uvicorn_options(settings.limits)  # this process's protocol class: the header timeout
    if settings.workers > 1 and not settings.threads:  # share the cores between the workers instead of oversubscribing
        settings = settings.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // settings.workers)})
    return build_app(settings)


def run_server(settings: ServeSettings, app: FastAPI | None = None) -> None:
    """Serve until interrupted (blocking); ``app``, when given, is ``build_app(settings)`` (one worker only)."""
    import uvicorn

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # Access lines are logged at info: a quieter level (dfkd -q) silences them, as it does uvicorn's startup lines.
        "access_log": settings.log_level in ("trace", "debug", "info"),
        **uvicorn_options(settings.limits),
    }
    if settings.workers > 1:
        os.environ[CONFIG_ENV] = settings.model_dump_json()
        uvicorn.run("dfkd.serve.server:app_from_env", factory=True, workers=settings.workers, **common)
    else:
        uvicorn.run(app or build_app(settings), **common)
