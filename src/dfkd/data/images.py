"""Reading images as RGB, whatever their mode, orientation or defects."""

from __future__ import annotations

import io
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# What dfkd reads as an image wherever it finds files (scan, crop-faces, detect's folders): the formats the service
# accepts too; GIF and TIFF by their first frame.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Refuse decompression bombs well before they exhaust memory (about 16k x 16k).
MAX_IMAGE_PIXELS = 256_000_000


class ImageLoadError(Exception):
    """An image could not be read; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path or '<image>'}: {reason}")


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has an image extension dfkd reads (any case)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str | os.PathLike[str], limit: int | None = None) -> list[str]:
    """Image files under ``folder`` (recursive, sorted), at most ``limit``."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found")
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and is_image_path(p))
    return paths[:limit] if limit else paths


def unreadable_reason(error: OSError) -> str:
    """``cannot read: permission denied``: why the system could not read a path, in its own words (one wording for
    images, scans and ``detect``'s inputs)."""
    return f"cannot read: {(error.strerror or str(error)).lower()}"


def _as_uint8(array: np.ndarray, what: str = "array") -> np.ndarray:
    """``array``'s values as uint8, by the rules ``to_pil`` gives (those of 16-bit 'I;16' and 32-bit 'I' and 'F'
    images too).

    Raises:
        ImageLoadError: for other dtypes, non-finite floats and negative integers (no rule says what they mean).
    """
    kind = array.dtype.kind
    if kind not in "uif":  # bool masks, complex numbers, objects: no rule makes them pixels
        raise ImageLoadError(None, f"unsupported {what} dtype {array.dtype}")
    if array.dtype == np.uint8:
        return array
    if kind == "f" and not np.isfinite(array).all():
        raise ImageLoadError(None, f"{what} has non-finite values")
    if kind == "i" and array.min() < 0:
        raise ImageLoadError(None, f"{what} has negative values ({array.dtype})")
    if kind == "u":
        peak = float(np.iinfo(array.dtype).max)
    elif kind == "i":
        peak = 65535.0 if array.max() > 255 else 255.0
    else:
        peak = 1.0 if array.max() <= 1.0 else 255.0
    # float32 scaled in place: 4 bytes a pixel beside the input, where float64 temporaries of a large image took 30
    scaled = array.astype(np.float32)
    scaled *= 255.0 / peak
    scaled += 0.5  # round to nearest
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, 16/32-bit scaled down (``_as_uint8``), CMYK and
    palettes converted."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return Image.fromarray(_as_uint8(np.asarray(image), "image")).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image decoded at a reduced size, and the size of the full-resolution image (both EXIF-oriented)."""

    image: Image.Image
    full_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Decoded width over full width (1.0 for a full decode; 1/2, 1/4, 1/8 for a DCT-scaled JPEG)."""
        return self.image.width / max(1, self.full_size[0])


def _reduction(size: tuple[int, int], min_short_side: int, min_long_side: int) -> float:
    """The smallest scale (≤ 1) keeping ``size``'s short side ≥ ``min_short_side`` and long side ≥ ``min_long_side``."""
    if min_short_side <= 0 and min_long_side <= 0:
        return 1.0
    short, long = sorted(size)
    return min(1.0, max(min_short_side / max(short, 1), min_long_side / max(long, 1)))


def _reduce_whole(image: Image.Image, reduction: float) -> Image.Image:
    """``image`` shrunk by the largest whole factor that keeps it at least ``reduction`` of its size (box filter)."""
    factor = math.floor(1.0 / reduction)
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        return _reduce_16bit(image, factor)
    if image.mode in ("1", "P", "PA"):  # bits and palette indices cannot be averaged: the smallest mode that can
        image = image.convert("L" if image.mode == "1" else "RGBA")
    return image.reduce(factor)


def _reduce_16bit(image: Image.Image, factor: int, strip_pixels: int = 1 << 22) -> Image.Image:
    """A 16-bit image reduced by ``factor``, still 16-bit (so ``_to_rgb`` scales it by the 16-bit range).

    Pillow cannot reduce 16-bit modes, only 32-bit 'I': strips of about ``strip_pixels`` are widened and reduced one
    at a time, so no full-size 32-bit copy exists. Strips start on multiples of ``factor`` rows: the same boxes as one
    ``reduce`` of the whole image.
    """
    width, height = image.size
    reduced = Image.new("I", (math.ceil(width / factor), math.ceil(height / factor)))
    step = factor * max(1, strip_pixels // (width * factor))
    for top in range(0, height, step):
        strip = image.crop((0, top, width, min(height, top + step))).convert("I")
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced.convert("I;16")


def _swaps_sides(image: Image.Image) -> bool:
    """True when the EXIF orientation turns the stored image by 90 degrees (tags 5 to 8)."""
    try:
        return image.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block: exif_transpose ignores it too
        return False


def decode_image(
    source: str | os.PathLike[str] | bytes,
    *,
    name: str | None = None,
    min_short_side: int = 0,
    min_long_side: int = 0,
) -> DecodedImage:
    """Decode a file path or encoded bytes into RGB at the smallest size that keeps the sides asked for.

    A JPEG is decoded DCT-scaled (libjpeg's 1/2, 1/4, 1/8 through Pillow's ``draft``), never below the sides asked
    for; other formats (no scaled decoding in their codecs) are decoded fully and at once reduced by whole factors
    (``Image.reduce``, before any RGB conversion, so a full-size RGB copy never exists), then resized down, when half
    the size or less serves. With no sides asked
    for (the default) the image is decoded at full size, as ``open_image`` does. EXIF orientation is honoured.

    Raises:
        ImageLoadError: naming the file and the reason (missing, unreadable, empty, truncated, not an image, too large).
    """
    label = name if name is not None else (None if isinstance(source, bytes) else str(source))
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError(label, "empty file (0 bytes)")
        stream: io.BytesIO | str = io.BytesIO(source)
    else:
        path = str(source)
        try:
            info = os.stat(path)
        except OSError as error:
            raise ImageLoadError(label, unreadable_reason(error)) from None
        if stat.S_ISDIR(info.st_mode):
            raise ImageLoadError(label, "cannot read: is a directory")
        if info.st_size == 0:
            raise ImageLoadError(label, "empty file (0 bytes)")
        stream = path
    # The size is checked from the header before decoding; PIL's own global bomb limit is left alone so that
    # threads decoding at once never race on it.
    try:
        with Image.open(stream) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageLoadError(label, f"image too large ({width}x{height} pixels)")
            full_size = (height, width) if _swaps_sides(image) else (width, height)
            reduction = _reduction((width, height), min_short_side, min_long_side)
            is_jpeg = image.format == "JPEG"
            if reduction <= 0.5 and is_jpeg:
                image.draft("RGB", (math.ceil(width * reduction), math.ceil(height * reduction)))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright photo
            if reduction <= 0.5 and not is_jpeg:
                image = _reduce_whole(image, reduction)
            image = _to_rgb(image)
            target = (max(1, round(full_size[0] * reduction)), max(1, round(full_size[1] * reduction)))
            if reduction <= 0.5 and not is_jpeg and image.size != target:
                image = image.resize(target, Image.BILINEAR)
            return DecodedImage(image, full_size)
    except ImageLoadError as error:  # _to_rgb's errors do not know the file's name
        raise ImageLoadError(label, error.reason) from None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(label, f"image too large ({error})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not an image (unrecognised format)") from None
    except OSError as error:
        if error.errno is not None:  # the system's, opening or reading the file (permissions): not a decoding error
            raise ImageLoadError(label, unreadable_reason(error)) from None
        message = str(error)
        lowered = message.lower()
        reason = "truncated or corrupt image" if "truncated" in lowered or "broken" in lowered else "undecodable"
        raise ImageLoadError(label, f"{reason} ({message})") from None
    except (ValueError, SyntaxError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(label, f"undecodable ({error})") from None


def open_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Image.Image:
    """Decode a file path or encoded bytes into a full-size RGB PIL image, honouring EXIF orientation.

    Raises:
        ImageLoadError: naming the file and the reason (missing, empty, truncated, not an image, too large).
    """
    return decode_image(source, name=name).image


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """Accept a PIL image or an HxW / HxWxC (C = 1, 3 or 4; RGB order) array and return an RGB PIL image.

    Array values: uint8 as they are; other unsigned integers scaled by their dtype's range (uint16: /257, as a 16-bit
    PNG); signed integers as 0..255, or as 0..65535 when any is above 255; floats as 0..1 when none is above 1, else
    as 0..255; out-of-range values clipped.

    Raises:
        ImageLoadError: for an empty image, another shape, another dtype (bool, object…), non-finite floats or
            negative integers.
    """
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ImageLoadError(None, f"empty image ({image.width}x{image.height})")
        return _to_rgb(ImageOps.exif_transpose(image))
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageLoadError(None, f"array of shape {tuple(array.shape)} is not an HxW or HxWxC image")
    if array.size == 0:
        raise ImageLoadError(None, f"empty image ({array.shape[1]}x{array.shape[0]})")
    array = _as_uint8(array)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    mode = "RGBA" if array.shape[2] == 4 else "RGB"
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array), mode=mode))


def verify_image(path: str | os.PathLike[str]) -> str | None:
    """Fully decode one file; return ``None`` when readable, else the reason it is not."""
    try:
        open_image(path)
    except ImageLoadError as error:
        return error.reason
    return None


def file_digest(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-1 hex digest of a file's bytes (used to find the same image in two splits)."""
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
