"""Hostile model files: a swapped label map, a folder given as a model, a pickle that would run code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from dfkd.card import CardError
from dfkd.cli import app
from dfkd.models import ModelFileError, create_model, read_model_card
from tests.inference.helpers import make_tiny_model

runner = CliRunner()


def _with_labels(source: Path, out: Path, labels: dict[str, str]) -> Path:
    """Rewrite a model file's card with another label map, as anyone with the safetensors library can."""
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(source))
    record = json.loads(metadata["dfkd"])
    record["labels"] = labels
    save_file(tensors, str(out), metadata={**metadata, "dfkd": json.dumps(record)})
    return out


@pytest.mark.parametrize(
    "labels",
    [{"0": "fake", "1": "real"}, {"0": "real", "1": "REAL"}, {"0": "genuine", "1": "fake"}],
)
def test_a_label_map_other_than_real_fake_is_refused(tmp_path: Path, labels: dict[str, str]) -> None:
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    tampered = _with_labels(model, tmp_path / "tampered.safetensors", labels)
    with pytest.raises(CardError, match=r"labels: .*fake = 1"):
        read_model_card(tampered)
    result = runner.invoke(app, ["info", str(tampered)])
    assert result.exit_code == 2 and "labels" in result.output and "Traceback" not in result.output
    assert read_model_card(model).labels == {"0": "real", "1": "fake"}  # the untampered file still loads


def test_a_folder_given_as_a_model_file_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        read_model_card(folder)
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 2 and "is a folder, not a model file" in " ".join(result.output.split())
    with pytest.raises(ModelFileError, match="is a folder, not a weight file"):
        create_model("resnet8", pretrained=folder)


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo should-never-run",))


class _NotATensor:
    pass


@pytest.mark.parametrize(("payload", "named"), [(_RunsCode, "system"), (_NotATensor, "_NotATensor")])
def test_a_hostile_pickle_is_refused_without_advice_to_unpickle_it(tmp_path: Path, payload: type, named: str) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"weight": payload()}, evil)
    with pytest.raises(ModelFileError) as caught:
        create_model("resnet8", pretrained=evil)
    message = str(caught.value)
    assert "refused" in message and named in message  # names what was blocked
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "safe_globals" not in message and "\n" not in message
