"""The service's routes on one ``APIRouter``: ``POST /v1/detect``, ``GET /v1/model``, ``GET /healthz`` and the page.

Each route finds the app's ``ServiceState`` (detector, batcher, limits, key) on ``request.app.state.service`` and
answers a pydantic model of ``dfkd.serve.schemas`` (declared as ``response_model``, so FastAPI validates it).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader

from dfkd import __version__
from dfkd.faces.detect import DETECTOR_NAMES, FaceDetectorUnavailable, build_face_detector
from dfkd.serve.batcher import MicroBatcher, QueueFull
from dfkd.serve.errors import ApiError
from dfkd.serve.schemas import DetectResponse, ErrorResponse, Health, ModelInfo
from dfkd.serve.settings import ServeLimits
from dfkd.serve.uploads import check_uploads, decode_failure, error_result, read_uploads

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_KEY_HEADER = "X-API-Key"
# The face modes a request may choose: those of `dfkd serve --faces` (and Detector), built from the detector names.
FACE_MODES: tuple[str, ...] = ("auto", "none", *DETECTOR_NAMES)
FaceMode = Literal[FACE_MODES]  # type: ignore[valid-type]  # Literal of a tuple: one value per mode

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
        (400, "invalid query (or a face detector this server lacks), malformed or truncated multipart body, no files"),
        (401, "missing or wrong X-API-Key (when the server has one)"),
        (413, "request too large, too many files, or an image (or all together) with too many pixels"),
        (415, "not multipart, or a file whose bytes are no image format (whatever its name or declared type)"),
        (422, "an empty file or an image that does not decode, e.g. truncated (when no file of the request decodes)"),
        (503, "the server's queue is full: retry after the Retry-After header's seconds"),
        (504, "processing took longer than the server's timeout"),
    )
}


@dataclass
class ServiceState:
    """What the routes of one app share: the detector, its batch worker, the decoding threads, limits and key."""

    detector: Any
    limits: ServeLimits
    api_key: str | None
    batcher: MicroBatcher
    decoders: ThreadPoolExecutor

    @property
    def threshold(self) -> float:
        """The model's decision threshold on the fake probability."""
        return float(self.detector.threshold)

    @property
    def default_faces(self) -> str:
        """The face mode of requests that do not choose one."""
        return str(getattr(self.detector, "faces", "auto"))


def architecture_name(detector: Any) -> str:
    """The model's architecture name from its metadata ('unknown' when absent)."""
    architecture = detector.metadata.get("architecture")
    if isinstance(architecture, dict):
        return str(architecture.get("name", "unknown"))
    return str(architecture or "unknown")


def get_service(request: Request) -> ServiceState:
    """The ``ServiceState`` of the app serving ``request``."""
    return request.app.state.service


key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Needed when the server has a key.")


async def require_key(key: str | None = Depends(key_header), service: ServiceState = Depends(get_service)) -> None:
    """Refuse (401) a missing or wrong key when the server has one."""
    if service.api_key is None:
        return
    challenge = {"WWW-Authenticate": "ApiKey"}
    if key is None:
        message = f"this server needs an API key in the {API_KEY_HEADER} header"
        raise ApiError("unauthorized", message, headers=challenge)
    if not hmac.compare_digest(key.encode(), service.api_key.encode()):
        raise ApiError("unauthorized", f"wrong API key in the {API_KEY_HEADER} header", headers=challenge)


router = APIRouter()


async def check_face_mode(service: ServiceState, faces: str) -> None:
    """Refuse (400) a named face detector that this server cannot run, saying why; ``auto`` and ``none`` always run.

    Detectors are built once per name and shared (``build_face_detector``), so only a detector's first request pays
    for loading it, on a decoding thread rather than the event loop.
    """
    if faces in ("auto", "none"):
        return
    build = functools.partial(build_face_detector, faces, service.detector.face_model)
    try:
        await asyncio.get_running_loop().run_in_executor(service.decoders, build)
    except FaceDetectorUnavailable as error:
        raise ApiError("invalid_request", f"faces={faces} is not available on this server: {error}") from None


def _raise_when_all_failed(failures: list[ApiError | None]) -> None:
    """When no file of a request can be scored, the request fails with the first file's error (listing all)."""
    if not failures or any(failure is None for failure in failures):
        return
    first = failures[0]
    assert first is not None
    details = [failure.payload()["error"] for failure in failures if failure is not None] if len(failures) > 1 else None
    raise ApiError(first.code, first.message, file=first.file, details=details, reason=first.reason)


def _refuse_too_many_pixels(total: int, limit: int) -> None:
    if total > limit:
        message = f"the images hold {total:,} pixels together, above the limit of {limit:,} pixels per request"
        raise ApiError("too_many_pixels", f"{message}: send fewer or smaller images per request")


async def detect_uploads(service: ServiceState, request: Request, faces: str, explain: bool) -> dict[str, Any]:
    """Read, check and score a request's files: one result per file, in order (failed files in their place).

    Only headers are read here; the batch worker's detection pipeline decodes each file at the size it needs.
    """
    started = time.perf_counter()
    batcher, threshold = service.batcher, service.threshold
    with batcher.arriving():  # the batch worker waits for requests still reading or checking
        uploads = await read_uploads(request, service.limits.max_files)
        check = functools.partial(check_uploads, uploads, max_pixels=service.limits.max_pixels)
        failures, pixels = await asyncio.get_running_loop().run_in_executor(service.decoders, check)
        _raise_when_all_failed(failures)
        _refuse_too_many_pixels(sum(pixels), service.limits.max_request_pixels)
        admitted = [position for position, failure in enumerate(failures) if failure is None]
        try:
            futures = batcher.submit(
                [(uploads[position].name, uploads[position].data) for position in admitted],
                faces=faces,
                explain=explain,
                pixels=[pixels[position] for position in admitted],
            )
        except QueueFull as error:
            logger.warning("refused a request of %d images: %s", len(admitted), error.reason)
            headers = {"Retry-After": str(error.retry_after_s)}
            raise ApiError("overloaded", f"{error.reason}; retry in {error.retry_after_s} s", headers=headers) from None
    scored = iter(await batcher.collect(futures))
    results = []
    for position, upload in enumerate(uploads):
        result = None
        if failures[position] is None:
            result = next(scored)
            if result.get("status") == "error":
                failures[position] = decode_failure(upload.name, result.get("error") or "")
            result.setdefault("error_code", "prediction_failed" if result.get("status") == "error" else None)
        failure = failures[position]
        if failure is not None:
            result = error_result(upload.name, failure, threshold)
            if explain:
                result["explain_png"] = None
        results.append(result)
    _raise_when_all_failed(failures)
    return {
        "results": results,
        "faces": faces,
        "explain": explain,
        "threshold": threshold,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 2),
    }


@router.post(
    "/v1/detect",
    dependencies=[Depends(require_key)],
    openapi_extra={"requestBody": DETECT_REQUEST_BODY},
    response_model=DetectResponse,
    # A result has exactly the keys its scoring gave it (explain_png only with explain=true, and so on).
    response_model_exclude_unset=True,
    responses=ERROR_RESPONSES,
    summary="Score images for being deepfakes",
)
async def detect(
    request: Request,
    faces: FaceMode | None = Query(
        None,
        description="auto: find faces and score each (the image takes its most fake face) with the best detector "
        "the server has; yunet, centerface or mtcnn: with that detector (yunet only when the server has its model "
        "file); none: score the whole image. Default: the server's setting.",
    ),
    explain: bool = Query(False, description="Add a Grad-CAM overlay per image (base64 PNG in explain_png)."),
    service: ServiceState = Depends(get_service),
) -> dict[str, Any]:
    """One result per uploaded file, in order, shaped like ``Detector.predict``'s."""
    mode = faces or service.default_faces
    await check_face_mode(service, mode)
    timeout_s = service.limits.timeout_s
    try:
        return await asyncio.wait_for(detect_uploads(service, request, mode, explain), timeout=timeout_s)
    except asyncio.TimeoutError:
        logger.warning("request timed out after %.1f s", timeout_s)
        raise ApiError("timeout", f"the request took longer than the server's limit of {timeout_s:g} s") from None


@router.get(
    "/v1/model",
    dependencies=[Depends(require_key)],
    response_model=ModelInfo,
    summary="The model's metadata and metrics",
)
async def model_info(service: ServiceState = Depends(get_service)) -> dict[str, Any]:
    """The model file's record (architecture, preprocessing, threshold, labels, metrics) and the server's limits."""
    detector = service.detector
    metadata = detector.metadata
    backend = getattr(getattr(detector, "backend", None), "kind", None)
    return {
        "architecture": architecture_name(detector),
        "backend": backend,
        "threshold": service.threshold,
        "faces": service.default_faces,
        "explain_supported": backend in (None, "torch"),
        "metrics": metadata.get("metrics") or {},
        "metadata": metadata,
        "limits": service.limits,
        "dfkd_version": __version__,
    }


@router.get("/healthz", response_model=Health, summary="Liveness: the batch worker runs")
async def healthz(service: ServiceState = Depends(get_service)) -> dict[str, Any]:
    """``status: ok`` while the batch worker runs; 503 otherwise."""
    if not service.batcher.running:
        raise ApiError("unavailable", "the batch worker is not running")
    images, pixels = service.batcher.in_flight  # one consistent reading
    return {
        "status": "ok",
        "model": architecture_name(service.detector),
        "api_key_required": service.api_key is not None,
        "queued": service.batcher.queued,
        "in_flight_images": images,
        "in_flight_pixels": pixels,
        "batching": service.batcher.stats.as_dict(),
    }


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The upload page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
