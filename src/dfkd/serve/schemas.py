"""Response shapes, for the OpenAPI docs (the handlers answer plain JSON of these shapes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
