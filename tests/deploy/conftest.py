"""Fixtures for the deploy tests: a tiny model file and real photos for parity checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import realfaces_sample
from tests.inference.helpers import make_tiny_model, train_tiny_on_manifest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random resnet8_fast model file (resize 72, input 64)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_deploy") / "tiny.safetensors")


def skimage_photos() -> list[Image.Image]:
    """Photos that ship with scikit-image: the astronaut (512x512), a coffee cup (600x400) and a cat (451x300)."""
    from skimage import data

    return [Image.fromarray(data.astronaut()), Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]


@pytest.fixture(scope="session", params=["skimage", "realfaces-dev"])
def real_images(request: pytest.FixtureRequest) -> list[Image.Image | Path]:
    """Real photos, a set per parameter: scikit-image's (always here), or up to eight realfaces-dev images (or skip)."""
    if request.param == "skimage":
        return list(skimage_photos())
    return list(realfaces_sample(8))


@pytest.fixture(scope="session")
def easy_model(easy_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8_fast fitted in a few steps on the easy (bright fakes) dataset."""
    return train_tiny_on_manifest(easy_manifest, tmp_path_factory.mktemp("easy_model") / "easy.safetensors")
