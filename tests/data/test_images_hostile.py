"""Reading hostile images: 16-bit ones reduced before conversion, odd arrays and unreadable paths refused by name."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dfkd.data.images as images
from dfkd.data.images import ImageLoadError, decode_image, to_pil


def _blocks_16bit(levels: np.ndarray, block: int, mode: str = "I;16") -> Image.Image:
    """A 16-bit image of ``block`` x ``block`` squares, each at 257 x its 8-bit level (so /257 gives it back)."""
    values = np.kron(levels.astype(np.uint16) * 257, np.ones((block, block), dtype=np.uint16))
    image = Image.fromarray(values)  # I;16
    return image if mode == "I;16" else Image.frombytes(mode, image.size, values.astype(">u2").tobytes())


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_images_are_reduced_before_the_rgb_conversion(mode: str) -> None:
    levels = np.arange(35, dtype=np.uint16).reshape(5, 7) * 7
    reduced = images._reduce_whole(_blocks_16bit(levels, 6, mode), 1 / 6)
    assert reduced.mode.startswith("I;16") and reduced.size == (7, 5)  # reduced, still scaled by the 16-bit range
    assert np.array_equal(np.asarray(images._to_rgb(reduced))[:, :, 0], levels)


def test_16bit_strips_reduce_as_one_whole_image_does() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 65536, (103, 61), dtype=np.uint16))
    whole = np.asarray(image.convert("I").reduce(3))
    for strip_pixels in (1, 500, 1 << 22):  # one box row a strip, a few, the whole image
        strips = images._reduce_16bit(image, 3, strip_pixels=strip_pixels)
        assert strips.mode == "I;16" and np.array_equal(np.asarray(strips).astype(np.int64), whole)


def test_16bit_png_decodes_reduced_and_scaled(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    _blocks_16bit(np.full((5, 8), 200), 50).save(path)  # 400 x 250, every pixel 51400 = 200 x 257
    decoded = decode_image(path, min_short_side=50)
    assert decoded.full_size == (400, 250) and decoded.image.size == (80, 50) and decoded.image.mode == "RGB"
    assert np.all(np.asarray(decoded.image) == 200)


def test_range_rules_of_32bit_images_are_kept() -> None:
    small = Image.fromarray(np.full((4, 4), 200, dtype=np.int32))  # 'I' with values up to 255: taken as they are
    large = Image.fromarray(np.full((4, 4), 51400, dtype=np.int32))  # above 255: a 16-bit range
    unit = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))  # 'F' up to 1.0: 0..1, rounded to nearest
    assert [images._to_rgb(image).getpixel((0, 0))[0] for image in (small, large, unit)] == [200, 200, 128]


def test_16bit_images_over_the_pixel_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    _blocks_16bit(np.ones((2, 2)), 20).save(tmp_path / "deep.png")  # 40 x 40 = 1600 pixels, 2 bytes each
    with pytest.raises(ImageLoadError, match=r"too large \(40x40 pixels\)"):
        decode_image(tmp_path / "deep.png")


def test_float_image_files_with_non_finite_values_are_refused_by_name(tmp_path: Path) -> None:
    values = np.zeros((8, 8), dtype=np.float32)
    values[3, 3] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tif")
    with pytest.raises(ImageLoadError) as info:
        decode_image(tmp_path / "nan.tif")
    assert info.value.path == str(tmp_path / "nan.tif") and info.value.reason == "image has non-finite values"


def test_wide_integer_arrays_are_scaled_by_their_dtype_range() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(to_pil(rgb.astype(np.uint16) * 257)), rgb)  # as a 16-bit PNG: /257
    assert np.array_equal(np.asarray(to_pil(rgb.astype(np.int64))), rgb)  # signed, up to 255: as they are
    assert np.array_equal(np.asarray(to_pil(rgb.astype(np.int32) * 257)), rgb)  # signed, above 255: 16-bit
    assert np.array_equal(np.asarray(to_pil(rgb / 255.0)), rgb)  # floats up to 1.0: 0..1


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.array([[[0.5, np.inf, 0.0]]]), "array has non-finite values"),
        (np.full((2, 2, 3), np.nan, dtype=np.float32), "array has non-finite values"),
        (-np.ones((2, 2, 3), dtype=np.int16), "array has negative values (int16)"),
        (np.zeros((0, 0, 3), dtype=np.uint8), "empty image (0x0)"),
        (np.zeros((0, 7), dtype=np.uint8), "empty image (7x0)"),
        (np.empty((2, 2, 3), dtype=object), "unsupported array dtype object"),
        (np.ones((2, 2), dtype=bool), "unsupported array dtype bool"),
    ],
)
def test_arrays_without_a_pixel_meaning_are_refused(array: np.ndarray, reason: str) -> None:
    with pytest.raises(ImageLoadError) as info:
        to_pil(array)
    assert info.value.reason == reason


def test_empty_pil_images_are_refused() -> None:
    with pytest.raises(ImageLoadError) as info:
        to_pil(Image.new("RGB", (0, 0)))
    assert info.value.reason == "empty image (0x0)"


def test_unreadable_paths_say_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageLoadError) as info:
        decode_image(tmp_path)
    assert info.value.reason == "cannot read: is a directory"
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)

    def denied(*args: object, **kwargs: object) -> Image.Image:  # chmod does not stop root, who may run the tests
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(images.Image, "open", denied)
    with pytest.raises(ImageLoadError) as info:
        decode_image(path)
    assert info.value.path == str(path) and info.value.reason == "cannot read: permission denied"
