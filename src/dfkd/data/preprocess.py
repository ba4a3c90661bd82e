"""Model-input preprocessing in NumPy and Pillow, identical to ``dfkd.data.transforms.build_eval_transform``.

Kept free of torch so an exported ONNX model runs with onnxruntime alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from dfkd.card import Preprocessing


def as_preprocessing(preprocessing: Preprocessing | Mapping[str, Any]) -> Preprocessing:
    """A card's :class:`Preprocessing`, or a ``{resize_size, input_size, mean, std}`` mapping validated into one."""
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    return Preprocessing.model_validate(dict(preprocessing))


def _center_offset(size: int, crop: int) -> int:
    # torchvision pads (crop - size) // 2 on the left/top before cropping at 0 when the crop is larger.
    return -((crop - size) // 2) if crop > size else round((size - crop) / 2.0)


def resize_and_crop(image: Image.Image, resize_size: int, input_size: int) -> Image.Image:
    """Resize the shorter side to ``resize_size`` (bilinear), then centre-crop ``input_size`` (torchvision's maths).

    A very elongated image (a 1 x 40,000 strip would resize to 256 x 10 million) has only the span of its long side
    that the crop keeps resized, through Pillow's source box: the same pixels (within rounding), without the
    gigabytes.
    """
    width, height = image.size
    portrait = width <= height
    short, long = (width, height) if portrait else (height, width)
    new_short, new_long = resize_size, int(resize_size * long / short)
    start = _center_offset(new_long, input_size)  # where the crop begins along the long side, resized
    if new_long > 4 * max(resize_size, input_size) and start >= 0:
        scale = long / new_long  # source pixels per resized pixel along the long side, as a full resize has it
        span = (start * scale, (start + input_size) * scale)
        box = (0, span[0], short, span[1]) if portrait else (span[0], 0, span[1], short)
        size = (new_short, input_size) if portrait else (input_size, new_short)
        image = image.resize(size, Image.BILINEAR, box=box)
        offset = _center_offset(new_short, input_size)
        return image.crop(
            (offset, 0, offset + input_size, input_size) if portrait else (0, offset, input_size, offset + input_size)
        )
    new_size = (new_short, new_long) if portrait else (new_long, new_short)
    if new_size != image.size:
        image = image.resize(new_size, Image.BILINEAR)
    left, top = _center_offset(image.width, input_size), _center_offset(image.height, input_size)
    return image.crop((left, top, left + input_size, top + input_size))


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [H, W, 3] → float32 [3, H, W] scaled to [0, 1] and normalised per channel."""
    chw = pixels.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean_array = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_array = np.asarray(std, dtype=np.float32)[:, None, None]
    return (chw - mean_array) / std_array


def preprocess_image(image: Image.Image, preprocessing: Preprocessing | Mapping[str, Any]) -> np.ndarray:
    """One RGB image → model input [3, S, S] float32."""
    view = as_preprocessing(preprocessing)
    pixels = resize_and_crop(image.convert("RGB"), view.resize_size, view.input_size)
    return normalise(np.asarray(pixels), view.mean, view.std)


def preprocess_batch(images: Sequence[Image.Image], preprocessing: Preprocessing | Mapping[str, Any]) -> np.ndarray:
    """RGB images → model input batch [B, 3, S, S] float32."""
    view = as_preprocessing(preprocessing)
    if not images:
        return np.zeros((0, 3, view.input_size, view.input_size), dtype=np.float32)
    return np.stack([preprocess_image(image, view) for image in images])
