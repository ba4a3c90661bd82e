"""A model file whose card is out of range is refused by every command that loads it, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.models import create_model


@pytest.fixture
def nan_threshold_model(tmp_path: Path) -> Path:
    record = {
        "format": "dfkd-model",
        "format_version": 1,
        "architecture": {"name": "resnet8", "kwargs": {}},
        "threshold": "nan",  # once labelled every image real in detect and made serve answer 500
    }
    state = {key: value.contiguous() for key, value in create_model("resnet8").state_dict().items()}
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path), metadata={"dfkd": json.dumps(record)})
    return path


@pytest.mark.parametrize("command", ["detect", "serve", "info"])
def test_a_nan_threshold_is_refused_before_anything_runs(
    nan_threshold_model: Path, tmp_path: Path, command: str
) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    args = {
        "detect": ["detect", str(image), "--model", str(nan_threshold_model), "--faces", "none"],
        "serve": ["serve", "--model", str(nan_threshold_model), "--port", "1"],
        "info": ["info", str(nan_threshold_model)],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "threshold" in result.output and "must be a number in [0, 1]" in result.output, result.output
