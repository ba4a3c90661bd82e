"""Request-size limit as ASGI middleware: refuse on Content-Length before reading, and count while streaming."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dfkd.serve.errors import error_body_bytes
from dfkd.serve.settings import MIB

logger = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """The request body grew past the limit while it was being read (chunked uploads, lying Content-Length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than the limit of {limit:,} bytes ({format_bytes(limit)})")
        self.limit = limit


def format_bytes(size: int) -> str:
    """A byte count for people: ``20 MiB``, ``512 KiB``, ``100 bytes``."""
    if size >= MIB:
        return f"{size / MIB:.3g} MiB"
    if size >= 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size} bytes"


class BodySizeLimit:
    """Answer 413 (JSON) for request bodies above ``max_bytes``.

    A declared Content-Length above the limit is refused before a byte of the body is read (and the connection
    closed, since the body is left unread). Without one, or when it lies, the bytes are counted as they stream in and
    ``BodyTooLarge`` is raised from ``receive``; the route turns it into the same 413, and this middleware does so for
    any other reader as long as the response has not started.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            message = (
                f"request body of {declared:,} bytes ({format_bytes(declared)}) is larger than the limit of "
                f"{self.max_bytes:,} bytes ({format_bytes(self.max_bytes)})"
            )
            logger.info("refused %s %s: %s", scope.get("method"), scope.get("path"), message)
            await send_json_error(send, 413, "request_too_large", message, close=True)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as error:
            if started:
                raise
            await send_json_error(send, 413, "request_too_large", str(error), close=True)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def send_json_error(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """Send a complete JSON error response on a raw ASGI ``send``."""
    body = error_body_bytes(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
