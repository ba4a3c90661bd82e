"""The NumPy inference preprocessing equals the torchvision eval transform the models were trained with.

Both resize with Pillow's bilinear filter (torchvision's ``Resize`` on a PIL image calls ``Image.resize``), crop at the
same offsets and divide by 255 in float32, so the pixels agree exactly; the tolerance only allows for the float32
rounding of the normalisation, ``(x - mean) / std``: values reach about 2.6, whose float32 spacing is 2.4e-7
(measured: bit-identical on torch 2.14 / Pillow; the margin is for other builds' vectorised arithmetic).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfkd.data.preprocess import preprocess_batch
from dfkd.data.transforms import build_eval_transform

FLOAT32_NOISE = 1e-6
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photos() -> dict[str, Image.Image]:
    """Real photos of every shape: square, landscape, portrait, and one smaller than any crop."""
    from skimage import data

    coffee = Image.fromarray(data.coffee())  # 600x400
    return {
        "astronaut_512x512": Image.fromarray(data.astronaut()),
        "coffee_600x400": coffee,
        "cat_portrait_300x451": Image.fromarray(data.chelsea()).transpose(Image.Transpose.ROTATE_90),
        "coffee_odd_333x197": coffee.resize((333, 197), Image.LANCZOS),
        "tiny_37x23": coffee.resize((37, 23), Image.LANCZOS),
    }


@pytest.mark.parametrize(
    ("resize_size", "input_size"),
    [(256, 224), (72, 64), (64, 64), (57, 64)],
    ids=["imagenet", "small", "no_crop", "crop_beyond_the_image"],
)
def test_numpy_preprocessing_equals_the_torchvision_eval_transform(resize_size: int, input_size: int) -> None:
    preprocessing = {"resize_size": resize_size, "input_size": input_size, "mean": list(MEAN), "std": list(STD)}
    transform = build_eval_transform(resize_size, input_size, MEAN, STD)
    images = photos()
    numpy_batch = preprocess_batch(list(images.values()), preprocessing)
    assert numpy_batch.shape == (len(images), 3, input_size, input_size) and numpy_batch.dtype == np.float32
    for (name, image), numpy_input in zip(images.items(), numpy_batch, strict=True):
        torch_input = transform(image).numpy()
        assert torch_input.shape == numpy_input.shape, name
        difference = float(np.abs(torch_input - numpy_input).max())
        assert difference <= FLOAT32_NOISE, f"{name}: max |difference| {difference:.3g}"
