"""Response shapes: the routes declare them as ``response_model``, so FastAPI validates and documents each answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dfkd.serve.settings import ServeLimits


class FaceResult(BaseModel):
    """One face found in an image."""

    box: list[int] = Field(description="[x0, y0, x1, y1] in the image's pixels (EXIF orientation applied).")
    score: float = Field(description="The face detector's confidence.")
    fake_prob: float | None = Field(description="The face crop's fake probability.")


class DetectResult(BaseModel):
    """One uploaded file's result, as ``Detector.predict`` gives it (plus ``error_code`` and explanations)."""

    model_config = ConfigDict(extra="allow")

    input: str = Field(description="The uploaded file's name.")
    kind: str = "image"
    status: str = Field(description="ok, no_face (faces=auto found none: the whole image was scored) or error.")
    error: str | None = Field(description="Why the file could not be scored.")
    error_code: str | None = Field(description="undecodable_image, unsupported_media_type, image_too_large …")
    fake_prob: float | None = Field(description="Probability of a deepfake: the most fake face, or the whole image.")
    label: str | None = Field(description="fake when fake_prob >= threshold, else real.")
    threshold: float
    faces: list[FaceResult]
    width: int | None
    height: int | None
    explain_png: str | None = Field(None, description="explain=true: a base64 PNG Grad-CAM overlay.")
    explain_note: str | None = Field(None, description="explain=true: why there is no overlay (ONNX model).")


class DetectResponse(BaseModel):
    """The answer of ``POST /v1/detect``."""

    results: list[DetectResult] = Field(description="One per uploaded file, in order.")
    faces: str
    explain: bool
    threshold: float
    elapsed_ms: float


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str
    file: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``errors`` lists each file's when several files failed."""

    error: ErrorDetail
    errors: list[ErrorDetail] | None = None


class ModelInfo(BaseModel):
    """The answer of ``GET /v1/model``."""

    architecture: str
    backend: str | None = Field(description="torch or onnx.")
    threshold: float
    faces: str = Field(description="The server's default face mode.")
    explain_supported: bool
    metrics: dict[str, Any]
    metadata: dict[str, Any] = Field(description="The model file's record.")
    limits: ServeLimits
    dfkd_version: str


class BatchingStats(BaseModel):
    """The batch worker's counters."""

    batches: int
    images: int
    largest_batch: int
    skipped: int
    rejected: int = Field(description="Requests refused with 503 because the queue was full.")
    trims: int = Field(description="Times freed memory was handed back to the system after a burst.")
    busy_s: float


class Health(BaseModel):
    """The answer of ``GET /healthz``."""

    status: str
    model: str
    api_key_required: bool
    queued: int
    in_flight_images: int = Field(description="Images queued or being scored.")
    in_flight_pixels: int = Field(description="Their decoded pixels, counted against max_pixels_in_flight.")
    batching: BatchingStats
