"""Uploaded files: tell images from other content by their bytes and refuse decompression bombs, from the header.

The request only checks headers (``check_uploads``); the bytes are decoded by the detection pipeline when a worker
takes them, at the size the model needs (``dfkd.inference.pipeline``), and a failure there is ``decode_failure``.

The decision for one file:

- empty, or an image format whose bytes do not decode → ``undecodable_image`` (422), with ``open_image``'s reason;
- bytes that are no supported image (JPEG, PNG, WebP, BMP, GIF, TIFF): ``undecodable_image`` (422) when the part
  was declared an image (content type or file extension), else ``unsupported_media_type`` (415);
- width x height above ``max_pixels`` (read from the header, before decoding) → ``image_too_large`` (413).

The content decides, not the declared type: a PNG sent as ``application/octet-stream`` (curl's default) is fine.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dfkd.data.images import IMAGE_EXTENSIONS
from dfkd.serve.errors import ApiError
from dfkd.serve.limits import BodyTooLarge

logger = logging.getLogger(__name__)

# Pillow's format names of what the service accepts, by the magic bytes that open each format.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
IMAGE_CONTENT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/webp",
        "image/bmp",
        "image/x-bmp",
        "image/x-ms-bmp",
        "image/gif",
        "image/tiff",
    }
)
DECLARED_IMAGE_EXTENSIONS = IMAGE_EXTENSIONS | {".gif", ".tif", ".tiff"}
ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"
# How ``ImageLoadError`` reasons of undecodable bytes begin (see dfkd.data.images.decode_image).
DECODE_FAILURES = ("empty file", "not an image", "truncated", "undecodable", "cannot read")


def file_error(code: str, name: str, reason: str) -> ApiError:
    """The ``ApiError`` of one file: the message names it, ``reason`` says why."""
    return ApiError(code, f"{name}: {reason}", file=name, reason=reason)


@dataclass(frozen=True)
class Upload:
    """One file part of a request: its name (from the client), declared content type and bytes."""

    name: str
    content_type: str
    data: bytes


def sniff_image_format(data: bytes) -> str | None:
    """Pillow's format name of an accepted image by its first bytes, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def declared_image(upload: Upload) -> bool:
    """True when the client declared the part an image we accept (by content type or file extension)."""
    content_type = upload.content_type.split(";")[0].strip().lower()
    return content_type in IMAGE_CONTENT_TYPES or os.path.splitext(upload.name)[1].lower() in DECLARED_IMAGE_EXTENSIONS


def check_pixels(upload: Upload, image_format: str, max_pixels: int) -> int:
    """Read only the header and refuse an image of more than ``max_pixels`` pixels (a decompression bomb); its
    pixel count otherwise.

    Raises:
        ApiError: ``image_too_large`` (413) or ``undecodable_image`` (422) for a header Pillow cannot read.
    """
    try:
        with Image.open(io.BytesIO(upload.data), formats=[image_format]) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise file_error("image_too_large", upload.name, f"image too large ({error})") from None
    except UnidentifiedImageError:
        reason = f"starts like a {image_format} image but its header does not decode"
        raise file_error("undecodable_image", upload.name, reason) from None
    except Exception as error:  # Pillow raises many types on a broken header
        reason = f"undecodable {image_format} header ({type(error).__name__}: {error})"
        raise file_error("undecodable_image", upload.name, reason) from None
    if width * height > max_pixels:
        reason = f"{width}x{height} = {width * height:,} pixels is above the limit of {max_pixels:,} pixels"
        raise file_error("image_too_large", upload.name, reason)
    return width * height


def check_upload(upload: Upload, *, max_pixels: int) -> int:
    """Everything about one file that its header tells (content, format, pixel count), without decoding it; returns
    its pixel count.

    Raises:
        ApiError: ``unsupported_media_type``, ``image_too_large`` or ``undecodable_image``, naming the file.
    """
    if not upload.data:
        raise file_error("undecodable_image", upload.name, "empty file (0 bytes)")
    image_format = sniff_image_format(upload.data)
    if image_format is None:
        declared = upload.content_type or "no content type"
        if declared_image(upload):
            reason = f"declared an image ({declared}) but its bytes are not a {ACCEPTED_TEXT} image"
            raise file_error("undecodable_image", upload.name, reason)
        raise file_error(
            "unsupported_media_type", upload.name, f"unsupported type ({declared}); send {ACCEPTED_TEXT} images"
        )
    return check_pixels(upload, image_format, max_pixels)


def check_uploads(uploads: list[Upload], *, max_pixels: int) -> tuple[list[ApiError | None], list[int]]:
    """``check_upload`` on every file: ``None`` where it may be decoded, else the ``ApiError`` that says why not; and
    the pixel count of each (0 for a refused file)."""
    checked: list[ApiError | None] = []
    pixels: list[int] = []
    for upload in uploads:
        try:
            pixels.append(check_upload(upload, max_pixels=max_pixels))
        except ApiError as error:
            logger.info("rejected upload %s", error.message)
            checked.append(error)
            pixels.append(0)
        else:
            checked.append(None)
    return checked, pixels


def decode_failure(name: str, reason: str) -> ApiError | None:
    """The ``ApiError`` of a file whose decoding failed with ``reason`` (``ImageLoadError``'s), or None when the
    reason is not a decoding failure (a face detector or the model failed)."""
    if reason.startswith("image too large"):
        return file_error("image_too_large", name, reason)
    if reason.startswith(DECODE_FAILURES):
        return file_error("undecodable_image", name, reason)
    return None


def error_result(name: str, error: ApiError, threshold: float) -> dict[str, Any]:
    """The result of a file that could not be scored, with every key of a Detector result."""
    return {
        "input": name,
        "kind": "image",
        "status": "error",
        "error": error.reason,
        "error_code": error.code,
        "fake_prob": None,
        "label": None,
        "threshold": threshold,
        "faces": [],
        "width": None,
        "height": None,
    }


async def read_uploads(request: Request, max_files: int) -> list[Upload]:
    """The files of the multipart field ``files``.

    Raises:
        ApiError: not multipart (415), malformed (400), too large (413), too many files (413) or no files (400).
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            "unsupported_media_type",
            f"send the images as multipart/form-data in the field 'files' (got {content_type or 'no content type'})",
        )
    too_many = ApiError("too_many_files", f"too many files: send at most {max_files} images per request")
    try:
        form = await request.form(max_files=max_files, max_fields=64)
    except BodyTooLarge as error:
        raise ApiError("request_too_large", str(error)) from None
    except StarletteHTTPException as error:  # Starlette's multipart errors arrive as 400s
        if "too many files" in str(error.detail).lower():
            raise too_many from None
        raise ApiError("bad_multipart", f"malformed multipart body ({error.detail})") from None
    try:
        uploads = []
        for index, part in enumerate(form.getlist("files")):
            if isinstance(part, str):
                raise ApiError("bad_multipart", f"field 'files' item {index} is text, not a file")
            uploads.append(Upload(part.filename or f"files[{index}]", part.content_type or "", await part.read()))
        fields = sorted(set(form.keys()))
    finally:
        await form.close()
    if not uploads:
        seen = f" (got fields: {', '.join(fields)})" if fields else ""
        raise ApiError("no_files", f"no files: send one or more images in the multipart field 'files'{seen}")
    if len(uploads) > max_files:
        raise too_many
    return uploads
