"""Fixtures for the models tests: a real photo for ImageNet checks and small input batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF


def preprocess(image: Image.Image, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Resize (short side) → centre crop → [0, 1] → normalise, as a model's preprocessing says: [1, 3, S, S]."""
    image = TF.resize(image, preprocessing["resize_size"], interpolation=TF.InterpolationMode.BILINEAR)
    image = TF.center_crop(image, preprocessing["input_size"])
    pixels = TF.to_tensor(image)
    return TF.normalize(pixels, preprocessing["mean"], preprocessing["std"]).unsqueeze(0)


@pytest.fixture(scope="session")
def preprocess_image() -> Callable[[Image.Image, dict[str, Any]], torch.Tensor]:
    """The preprocessing function above, as a fixture."""
    return preprocess


@pytest.fixture(scope="session")
def coffee_image() -> Image.Image:
    """scikit-image's coffee photo (ImageNet class 967, "espresso")."""
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.coffee())


@pytest.fixture
def images_64() -> torch.Tensor:
    """A reproducible batch of two 64x64 images: [2, 3, 64, 64]."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
