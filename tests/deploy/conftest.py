"""Fixtures for the deploy tests: a tiny model file and real photos for parity checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.inference.helpers import REALFACES, astronaut, make_tiny_model, train_tiny_on_manifest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random resnet8_fast model file (resize 72, input 64)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_deploy") / "tiny.safetensors")


@pytest.fixture(scope="session")
def real_images() -> list[Image.Image | Path]:
    """The astronaut photo plus, when ../shared is present, eight realfaces-dev images."""
    images: list[Image.Image | Path] = [astronaut()]
    if REALFACES.is_dir():
        images += sorted(REALFACES.glob("*/*/*.jpg"))[::125][:8]
    return images


@pytest.fixture(scope="session")
def easy_model(easy_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8_fast fitted in a few steps on the easy (bright fakes) dataset."""
    return train_tiny_on_manifest(easy_manifest, tmp_path_factory.mktemp("easy_model") / "easy.safetensors")
