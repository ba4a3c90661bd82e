"""Fixtures for the real-data command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realdata.helpers import write_source


@pytest.fixture(scope="session")
def two_source_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest over two tiny sources, ``alpha`` (fakes brighter) and ``beta`` (fakes darker)."""
    from dfkd.data import build_manifest

    base = tmp_path_factory.mktemp("two_sources")
    per_split = {"train": 8, "val": 4, "test": 4}
    write_source(base / "alpha", fake_brighter=True, seed=1, per_split=per_split)
    write_source(base / "beta", fake_brighter=False, seed=2, per_split=per_split)
    build_manifest([base / "alpha", base / "beta"], base / "manifest.csv")
    return base / "manifest.csv"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained resnet8_fast model file (resize 40, input 32) inside a run folder ``run/model.safetensors``."""
    import torch

    from dfkd.models import create_model, save_model
    from dfkd.models.registry import make_preprocessing

    torch.manual_seed(0)
    model = create_model("resnet8_fast")
    model.dfkd_preprocessing = make_preprocessing(40, 32)
    path = tmp_path_factory.mktemp("tiny") / "run" / "model.safetensors"
    save_model(model, path)
    return path
