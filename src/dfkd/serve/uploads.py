"""Uploaded files: tell images from other content by their bytes and refuse decompression bombs, from the header.

The request only checks headers (``check_uploads``); the bytes are decoded by the detection pipeline when a worker
takes them, at the size the model needs (``dfkd.inference.pipeline``), and a failure there is ``decode_failure``.

The decision for one file:

- bytes that are no supported image format at all (JPEG, PNG, WebP, BMP, GIF, TIFF by their first bytes) →
  ``unsupported_media_type`` (415), whatever the part's declared type or file name;
- empty, or bytes of a supported format that do not decode (a broken header, truncated data) →
  ``undecodable_image`` (422), with ``open_image``'s reason;
- width x height above ``max_pixels`` (read from the header, before decoding) → ``image_too_large`` (413).

The content decides, not the declared type: a PNG sent as ``application/octet-stream`` (curl's default) is fine, and a
text file named ``x.jpg`` is still not an image (415).
"""

from __future__ import annotations

import io
import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from PIL import Image, UnidentifiedImageError
from starlette.formparsers import MultiPartException, MultiPartParser

from dfkd.serve.errors import ApiError
from dfkd.serve.limits import BodyTooLarge

logger = logging.getLogger(__name__)

# Pillow's format names of what the service accepts, by the magic bytes that open each format.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"
# How ``ImageLoadError`` reasons of undecodable bytes begin (see dfkd.data.images.decode_image), and of pixels no
# rule turns into colours (a float TIFF holding NaN: dfkd.data.images._as_uint8).
DECODE_FAILURES = (
    "empty file",
    "not an image",
    "truncated",
    "undecodable",
    "cannot read",
    "image has non-finite values",
    "image has negative values",
    "unsupported image dtype",
)


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


def check_pixels(upload: Upload, image_format: str, max_pixels: int) -> int:
    """Read only the header and refuse an image of more than ``max_pixels`` pixels (a decompression bomb); its
    pixel count otherwise.

    Raises:
        ApiError: ``image_too_large`` (413) or ``undecodable_image`` (422) for a header Pillow cannot read.
    """
    limit = max_pixels
    try:
        with Image.open(io.BytesIO(upload.data), formats=[image_format]) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        # Pillow refuses sizes above its own bomb limit without telling the size: read it as Image.open did, minus that
        # check, so the answer words it like every other size refusal (the lower of the two limits applied).
        with Image.OPEN[image_format][0](io.BytesIO(upload.data)) as image:
            width, height = image.size
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or 0))
    except UnidentifiedImageError:
        reason = f"starts like a {image_format} image but its header does not decode"
        raise file_error("undecodable_image", upload.name, reason) from None
    except Exception as error:  # Pillow raises many types on a broken header
        reason = f"undecodable {image_format} header ({type(error).__name__}: {error})"
        raise file_error("undecodable_image", upload.name, reason) from None
    if width * height > limit:
        whose = " (Pillow's decompression-bomb limit)" if limit < max_pixels else ""
        reason = f"{width}x{height} = {width * height:,} pixels is above the limit of {limit:,} pixels{whose}"
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
    if image_format is None:  # no image format at all, even when declared one: 415 (422 is for images that break)
        declared = upload.content_type or "no content type"
        reason = f"not an image: the bytes are not a {ACCEPTED_TEXT} image (declared {declared})"
        raise file_error("unsupported_media_type", upload.name, reason)
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


class ClosingCheckedParser(MultiPartParser):
    """Starlette's multipart parser, noting whether the body's closing boundary arrived: python-multipart does not
    check it, so a body cut short would otherwise parse as its complete parts alone, or as none (a misleading
    ``no_files``)."""

    closed = False

    def on_end(self) -> None:  # python-multipart calls it on the closing boundary only
        self.closed = True


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
        async with aclosing(request.stream()) as stream:
            parser = ClosingCheckedParser(request.headers, stream, max_files=max_files, max_fields=64)
            form = await parser.parse()
    except BodyTooLarge as error:
        raise ApiError("request_too_large", str(error)) from None
    except MultiPartException as error:
        if "too many files" in error.message.lower():
            raise too_many from None
        raise ApiError("bad_multipart", f"malformed multipart body ({error.message})") from None
    if not parser.closed:
        await form.close()
        raise ApiError(
            "bad_multipart",
            "malformed multipart body: it ends before its closing boundary (a truncated upload, or a client that "
            "never closed the body); no file was read",
        )
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
