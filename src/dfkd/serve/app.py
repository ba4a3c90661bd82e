"""The HTTP service: ``create_app(detector)`` builds a FastAPI app that scores uploaded images.

Endpoints: ``POST /v1/detect`` (multipart field ``files``; query ``faces=auto|none``, ``explain=true|false``),
``GET /v1/model``, ``GET /healthz``, ``GET /`` (the page), ``/docs`` (OpenAPI). Limits and their answers (all errors
are JSON ``{"error": {"code", "message", "file"}}``, see ``dfkd.serve.errors``):

- request body above ``max_request_bytes`` → 413 ``request_too_large`` (from Content-Length before reading, else
  while streaming);
- more than ``max_files`` files → 413 ``too_many_files``; none → 400 ``no_files``; not multipart → 415;
- per file: not an image → 415 ``unsupported_media_type``; an image that does not decode → 422
  ``undecodable_image``; more than ``max_pixels`` pixels → 413 ``image_too_large`` (checked from the header, before
  decoding);
- several files: when at least one decodes the answer is 200 and each failed file has ``status: "error"`` with its
  ``error`` and ``error_code`` (as the Detector returns unreadable inputs); when none decodes, the status and error
  are the first file's, and ``errors`` lists every file's;
- processing beyond ``timeout_s`` → 504 ``timeout``; a missing or wrong ``X-API-Key`` when ``api_key`` is set → 401.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from PIL.Image import Image
from starlette.concurrency import run_in_threadpool

from dfkd import __version__
from dfkd.serve.batcher import MicroBatcher
from dfkd.serve.errors import ApiError, install_error_handlers
from dfkd.serve.limits import MIB, BodySizeLimit, format_bytes
from dfkd.serve.schemas import DetectResponse, ErrorResponse
from dfkd.serve.uploads import decode_uploads, error_result, read_uploads

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_REQUEST_BYTES = 20 * MIB
DEFAULT_MAX_FILES = 16
# About 40 megapixels (e.g. 7744 x 5164): any camera photo, far below what would exhaust memory once decoded.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_TIMEOUT_S = 30.0

DETECT_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more images (JPEG, PNG, WebP, BMP, GIF, TIFF).",
                    }
                },
            }
        }
    },
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "invalid query, malformed multipart body or no files"),
        (401, "missing or wrong X-API-Key (when the server has one)"),
        (413, "request too large, too many files, or an image with too many pixels"),
        (415, "not multipart, or a file that is not an image"),
        (422, "an image that does not decode (when no file of the request decodes)"),
        (504, "processing took longer than the server's timeout"),
    )
}


def create_app(
    detector: Any,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    api_key: str | None = None,
    batch_window_ms: float = 5.0,
    max_batch: int = 32,
) -> FastAPI:
    """A FastAPI app serving ``detector`` (a ``dfkd.inference.Detector``) over HTTP, with the limits above.

    The batch worker starts and stops with the app's lifespan (uvicorn runs it).
    """
    for name, value in (("max_request_bytes", max_request_bytes), ("max_files", max_files), ("max_pixels", max_pixels)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    batcher = MicroBatcher(detector, window_s=batch_window_ms / 1000.0, max_batch=max_batch)
    limits = {
        "max_request_bytes": max_request_bytes,
        "max_files": max_files,
        "max_pixels": max_pixels,
        "timeout_s": timeout_s,
        "batch_window_ms": batch_window_ms,
        "max_batch": max_batch,
    }

    # Decoding runs on a few threads only: dozens of runnable threads (Starlette's pool) starve the batch worker of
    # the GIL and blow up tail latency under load.
    decoders = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="dfkd-serve-decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(warm_up, detector)
        batcher.start()
        logger.info("serving %s (limits %s)", architecture_name(detector), limits)
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
            f"`files` (at most {max_files} files, {format_bytes(max_request_bytes)} per request)."
        ),
        lifespan=lifespan,
    )
    app.state.detector = detector
    app.state.batcher = batcher
    app.state.limits = limits
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Needed when the server has a key.")

    async def require_key(key: str | None = Depends(key_header)) -> None:
        if api_key is None:
            return
        if key is None:
            raise ApiError("unauthorized", f"this server needs an API key in the {API_KEY_HEADER} header")
        if not hmac.compare_digest(key.encode(), api_key.encode()):
            raise ApiError("unauthorized", f"wrong API key in the {API_KEY_HEADER} header")

    threshold = float(detector.metadata.get("threshold", 0.5))
    default_faces = str(getattr(detector, "faces", "auto"))

    async def detect_uploads(request: Request, faces: str, explain: bool) -> dict[str, Any]:
        started = time.perf_counter()
        with batcher.arriving():  # the batch worker waits for requests still reading or decoding
            uploads = await read_uploads(request, max_files)
            decode = functools.partial(decode_uploads, uploads, max_pixels=max_pixels)
            decoded = await asyncio.get_running_loop().run_in_executor(decoders, decode)
            failures = [item for item in decoded if isinstance(item, ApiError)]
            if len(failures) == len(decoded):
                first = failures[0]
                details = [failure.payload()["error"] for failure in failures] if len(failures) > 1 else None
                raise ApiError(first.code, first.message, file=first.file, details=details, reason=first.reason)
            pairs = zip(uploads, decoded, strict=True)
            futures = batcher.submit(
                [(upload.name, item) for upload, item in pairs if isinstance(item, Image)], faces=faces, explain=explain
            )
        scored = iter(await batcher.collect(futures))
        results = []
        for upload, item in zip(uploads, decoded, strict=True):
            if isinstance(item, ApiError):
                result = error_result(upload.name, item, threshold)
                if explain:
                    result["explain_png"] = None
            else:
                result = next(scored)
                result.setdefault("error_code", "prediction_failed" if result.get("status") == "error" else None)
            results.append(result)
        return {
            "results": results,
            "faces": faces,
            "explain": explain,
            "threshold": threshold,
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 2),
        }

    @app.post(
        "/v1/detect",
        dependencies=[Depends(require_key)],
        openapi_extra={"requestBody": DETECT_REQUEST_BODY},
        response_model=None,
        responses={200: {"model": DetectResponse}, **ERROR_RESPONSES},
        summary="Score images for being deepfakes",
    )
    async def detect(
        request: Request,
        faces: Literal["auto", "none"] | None = Query(
            None,
            description="auto: find faces and score each (the image takes its most fake face); none: score "
            "the whole image. Default: the server's setting.",
        ),
        explain: bool = Query(False, description="Add a Grad-CAM overlay per image (base64 PNG in explain_png)."),
    ) -> JSONResponse:
        """One result per uploaded file, in order, shaped like ``Detector.predict``'s."""
        mode = faces or default_faces
        try:
            return JSONResponse(await asyncio.wait_for(detect_uploads(request, mode, explain), timeout=timeout_s))
        except asyncio.TimeoutError:
            logger.warning("request timed out after %.1f s", timeout_s)
            raise ApiError("timeout", f"the request took longer than the server's limit of {timeout_s:g} s") from None

    @app.get("/v1/model", dependencies=[Depends(require_key)], summary="The model's metadata and metrics")
    async def model_info() -> dict[str, Any]:
        """The model file's record (architecture, preprocessing, threshold, labels, metrics) and the server's limits."""
        metadata = detector.metadata
        backend = getattr(getattr(detector, "backend", None), "kind", None)
        return {
            "architecture": architecture_name(detector),
            "backend": backend,
            "threshold": threshold,
            "faces": default_faces,
            "explain_supported": backend in (None, "torch"),
            "metrics": metadata.get("metrics") or {},
            "metadata": metadata,
            "limits": limits,
            "dfkd_version": __version__,
        }

    @app.get("/healthz", summary="Liveness: the batch worker runs")
    async def healthz() -> dict[str, Any]:
        """``status: ok`` while the batch worker runs; 503 otherwise."""
        if not batcher.running:
            raise ApiError("unavailable", "the batch worker is not running")
        return {
            "status": "ok",
            "model": architecture_name(detector),
            "api_key_required": api_key is not None,
            "queued": batcher.queued,
            "batching": batcher.stats.as_dict(),
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def warm_up(detector: Any) -> None:
    """One small prediction, so that the first request does not pay for lazy initialisation."""
    from PIL import Image as PILImage

    try:
        detector.predict([PILImage.new("RGB", (64, 64), (128, 128, 128))], faces="none")
    except Exception as error:  # a detector that cannot warm up will say why on the first request
        logger.warning("warm-up prediction failed: %s", error)


def architecture_name(detector: Any) -> str:
    """The model's architecture name from its metadata ('unknown' when absent)."""
    architecture = detector.metadata.get("architecture")
    if isinstance(architecture, dict):
        return str(architecture.get("name", "unknown"))
    return str(architecture or "unknown")
