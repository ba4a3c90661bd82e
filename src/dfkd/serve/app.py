"""The HTTP service: ``create_app(detector, limits)`` builds a FastAPI app that scores uploaded images.

Endpoints: ``POST /v1/detect`` (multipart field ``files``; query ``faces=auto|none|yunet|centerface|mtcnn``,
``explain=true|false``), ``GET /v1/model``, ``GET /healthz``, ``GET /`` (the page), ``/docs`` (OpenAPI). Limits and
their answers (all errors are JSON ``{"error": {"code", "message", "file"}}``, see ``dfkd.serve.errors``; the limits
are a ``dfkd.serve.settings.ServeLimits``):

- request body above ``max_request_bytes`` → 413 ``request_too_large`` (from Content-Length before reading, else
  while streaming);
- more than ``max_files`` files → 413 ``too_many_files``; none → 400 ``no_files``; not multipart → 415; a
  multipart body that is malformed or ends before its closing boundary → 400 ``bad_multipart``;
- a face detector the server cannot run (``faces=yunet`` without its model file) → 400 ``invalid_request``;
- per file: bytes of no image format (whatever the name or declared type) → 415 ``unsupported_media_type``; an
  empty file, or an image format that does not decode (truncated, corrupt) → 422 ``undecodable_image``; more than
  ``max_pixels`` pixels → 413 ``image_too_large`` (checked from the header, before decoding); all files together
  above ``max_request_pixels`` → 413 ``too_many_pixels``;
- the queue full (``max_queue`` images or ``max_pixels_in_flight`` decoded pixels queued or being scored) → 503
  ``overloaded`` with ``Retry-After``: the server sheds load rather than letting requests time out;
- several files: when at least one decodes the answer is 200 and each failed file has ``status: "error"`` with its
  ``error`` and ``error_code`` (as the Detector returns unreadable inputs); when none decodes, the status and error
  are the first file's, and ``errors`` lists every file's;
- processing beyond ``timeout_s`` → 504 ``timeout``; a missing or wrong ``X-API-Key`` when ``api_key`` is set → 401.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from dfkd import __version__
from dfkd.serve.batcher import MicroBatcher
from dfkd.serve.errors import install_error_handlers
from dfkd.serve.limits import BodySizeLimit, format_bytes
from dfkd.serve.routes import STATIC_DIR, ServiceState, architecture_name, router
from dfkd.serve.settings import ServeLimits

__all__ = ["STATIC_DIR", "create_app", "warm_up"]

logger = logging.getLogger(__name__)


def create_app(detector: Any, limits: ServeLimits | None = None, *, api_key: str | None = None) -> FastAPI:
    """A FastAPI app serving ``detector`` (a ``dfkd.inference.Detector``) over HTTP within ``limits``.

    Args:
        detector: What scores the images (``predict``, ``explain``, ``threshold``, ``metadata``).
        limits: Sizes, timeout and batching (default: ``ServeLimits()``).
        api_key: When set, ``/v1`` requests need it in the ``X-API-Key`` header.

    The batch worker starts and stops with the app's lifespan (uvicorn runs it).
    """
    limits = limits or ServeLimits()
    batcher = MicroBatcher(
        detector,
        window_s=limits.batch_window_ms / 1000.0,
        max_batch=limits.max_batch,
        max_queue=limits.max_queue,
        max_pixels=limits.max_pixels_in_flight,
    )
    # Decoding runs on a few threads only: dozens of runnable threads (Starlette's pool) starve the batch worker of
    # the GIL and blow up tail latency under load.
    decoders = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="dfkd-serve-decode")
    service = ServiceState(detector=detector, limits=limits, api_key=api_key, batcher=batcher, decoders=decoders)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(warm_up, detector)
        batcher.start()
        logger.info("serving %s (limits %s)", architecture_name(detector), limits.model_dump())
        try:
            yield
        finally:
            await run_in_threadpool(batcher.stop)
            decoders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="dfkd deepfake detector",
        version=__version__,
        description=(
            "Score face images for being deepfakes. Upload images to `POST /v1/detect` in the multipart field "
            f"`files` (at most {limits.max_files} files, {format_bytes(limits.max_request_bytes)} per request)."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_request_bytes)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def warm_up(detector: Any) -> None:
    """One small prediction, so that the first request does not pay for lazy initialisation."""
    from PIL import Image as PILImage

    try:
        detector.predict([PILImage.new("RGB", (64, 64), (128, 128, 128))], faces="none")
    except Exception as error:  # a detector that cannot warm up will say why on the first request
        logger.warning("warm-up prediction failed: %s", error)
