"""Every error the service answers, as JSON: ``{"error": {"code": ..., "message": ..., "file": ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

# Machine-readable codes, with the HTTP status each is answered with.
ERROR_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "no_files": 400,
    "bad_multipart": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_too_large": 413,
    "too_many_files": 413,
    "image_too_large": 413,
    "too_many_pixels": 413,
    "unsupported_media_type": 415,
    "undecodable_image": 422,
    "internal_error": 500,
    "unavailable": 503,
    "overloaded": 503,
    "timeout": 504,
}


class ApiError(Exception):
    """An error answered as JSON with the status of its ``code`` (see ``ERROR_STATUS``).

    ``message`` names the file when there is one; ``reason`` is the same without the name.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        file: str | None = None,
        details: list[dict[str, Any]] | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.file = file
        self.details = details
        self.reason = reason or message  # the message without the file name, for per-file results
        self.headers = headers

    @property
    def status(self) -> int:
        """The HTTP status of this error."""
        return ERROR_STATUS[self.code]

    def payload(self) -> dict[str, Any]:
        """The JSON body; ``errors`` lists every failed file when there were several."""
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message, "file": self.file}}
        if self.details:
            body["errors"] = self.details
        return body


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON response of an ``ApiError``."""
    return JSONResponse(error.payload(), status_code=error.status, headers=headers)


def error_body_bytes(code: str, message: str) -> bytes:
    """The JSON body of an error as bytes, for raw ASGI responses sent before FastAPI sees the request."""
    import json

    return json.dumps({"error": {"code": code, "message": message, "file": None}}).encode()


def install_error_handlers(app: FastAPI) -> None:
    """Answer API errors, FastAPI's own HTTP and validation errors and crashes in the one JSON shape."""

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error, error.headers)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 401: "unauthorized"}
        code = codes.get(error.status_code, "invalid_request" if error.status_code < 500 else "internal_error")
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        body = {"error": {"code": code, "message": message, "file": None}}
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
            problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
        return error_response(ApiError("invalid_request", "; ".join(problems) or "invalid request"))

    async def on_crash(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(ApiError("internal_error", f"internal error ({type(error).__name__})"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_crash)
