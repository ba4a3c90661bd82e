"""The service's settings, declared once: ``ServeLimits`` (what a request may send and how it is batched) and
``ServeSettings`` (the model, where to listen, the limits). ``dfkd serve`` takes its option defaults from here, the app
enforces the limits and ``/v1/model`` reports them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

MIB = 1024 * 1024
API_KEY_ENV = "DFKD_API_KEY"  # read by `dfkd serve` (argv would show the key to other users)


class ServeLimits(BaseModel):
    """What one request may send, how long it may take, and how concurrent images are batched."""

    # inf or NaN would pass `ge=0` and `gt=0` (a batch window of inf stops the batch thread: it cannot wait forever)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_request_bytes: int = Field(20 * MIB, ge=1, description="Largest request body, bytes.")
    max_files: int = Field(16, ge=1, description="Most files per request.")
    # About 40 megapixels (e.g. 7744 x 5164): any camera photo, far below what would exhaust memory once decoded.
    max_pixels: int = Field(40_000_000, ge=1, description="Most pixels per image (decompression bombs).")
    timeout_s: float = Field(30.0, gt=0, description="Seconds a request may take before a 504.")
    batch_window_ms: float = Field(5.0, ge=0, description="How long to gather concurrent images into a batch.")
    max_batch: int = Field(32, ge=1, description="Most images per model call.")
    # Decoded pixels are counted from each header (every format at its full size: a JPEG's scaled decode can be redone
    # less scaled for a small face). 200 megapixels is 16 phone photos of 12 megapixels, 600 MB of RGB decoded.
    max_request_pixels: int = Field(
        200_000_000, ge=1, description="Most decoded pixels per request, all its images together (413 above)."
    )
    max_pixels_in_flight: int = Field(
        800_000_000, ge=1, description="Most decoded pixels queued or being scored, all requests together (503 above)."
    )
    max_queue: int = Field(256, ge=1, description="Most images queued or being scored (503 with Retry-After above).")
    header_timeout_s: float = Field(10.0, gt=0, description="Seconds a client may take to send a request's headers.")
    keep_alive_s: float = Field(5.0, gt=0, description="Seconds an idle keep-alive connection is held open.")
    max_connections: int = Field(256, ge=1, description="Most open connections and requests (503 above).")

    @model_validator(mode="after")
    def _a_full_request_fits_in_flight(self) -> ServeLimits:
        for request, server in (("max_request_pixels", "max_pixels_in_flight"), ("max_files", "max_queue")):
            if getattr(self, request) > getattr(self, server):
                raise ValueError(
                    f"{request} ({getattr(self, request):,}) must not exceed {server} ({getattr(self, server):,}): "
                    "a full request could never be admitted"
                )
        return self


DEFAULT_LIMITS = ServeLimits()


class ServeSettings(BaseModel):
    """Everything ``dfkd serve`` needs: the model, how to detect faces, where to listen and the limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="A dfkd model file (.safetensors) or an ONNX export.")
    device: str = "cpu"
    faces: str = "auto"
    face_model: str | None = None
    margin: float | None = Field(None, ge=0.0, description="Face margin; None: the model card's face crop.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="Server processes, each with its own model copy.")
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads per worker for the model runtime (PyTorch's or onnxruntime's) and the pipeline's "
        "decoding (None: their defaults; cores / workers with several workers).",
    )
    api_key: str | None = None
    log_level: str = Field("info", description="uvicorn's log level; below info (warning …) drops the access log.")
    limits: ServeLimits = DEFAULT_LIMITS
