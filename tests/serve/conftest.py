"""Fixtures for the serve tests: a tiny model, its Detector and live servers on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dfkd.inference import Detector
from dfkd.serve import create_app
from tests.serve.helpers import LiveServer, make_tiny_model


@pytest.fixture(scope="session")
def serve_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random resnet8_fast model file."""
    return make_tiny_model(tmp_path_factory.mktemp("serve_model") / "tiny.safetensors")


@pytest.fixture(scope="session")
def serve_detector(serve_model: Path) -> Detector:
    """The tiny model's Detector, whole images by default (faces="none")."""
    return Detector.load(serve_model, faces="none")


@pytest.fixture(scope="session")
def server(serve_detector: Detector) -> Iterator[LiveServer]:
    """A live server with the default limits."""
    with LiveServer(create_app(serve_detector)) as live:
        yield live
