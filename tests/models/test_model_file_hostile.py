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


def _with_header(source: Path, out: Path, change) -> Path:
    """``source`` with its safetensors header replaced by ``change(header)`` (a dict, or raw bytes)."""
    data = source.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = change(json.loads(data[8 : 8 + size]))
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    out.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size :])
    return out


def _set_card(header: dict, **architecture) -> dict:
    card = json.loads(header["__metadata__"]["dfkd"])
    card["architecture"].update(architecture)
    return {**header, "__metadata__": {**header["__metadata__"], "dfkd": json.dumps(card)}}


def _first_tensor(header: dict) -> str:
    return next(key for key in header if key != "__metadata__")


CRAFTED_HEADERS = {
    "metadata a list": (lambda h: {**h, "__metadata__": ["x"]}, "__metadata__ is not a JSON object"),
    "card an object": (lambda h: {**h, "__metadata__": {"dfkd": {"a": 1}}}, "metadata is not text"),
    "offset infinite": (
        lambda h: (
            json.dumps({**h, _first_tensor(h): {**h[_first_tensor(h)], "data_offsets": [0, 1e999]}})
            .replace("Infinity", "1e400")
            .encode()
        ),
        "malformed tensor entry",
    ),
    "header nested deep": (lambda h: b"[" * 100_000 + b"]" * 100_000, "header is not JSON"),
    "card nested deep": (
        lambda h: {**h, "__metadata__": {"dfkd": '{"metrics": ' + "[" * 100_000 + "]" * 100_000 + "}"}},
        "metadata is not JSON",
    ),
    "weights from a hub": (lambda h: _set_card(h, kwargs={"pretrained": "imagenet"}), r"\(pretrained\) would load"),
    "weights from a file": (lambda h: _set_card(h, kwargs={"pretrained": "/etc/hostname"}), "from elsewhere"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_HEADERS))
def test_crafted_headers_are_refused_naming_the_file(tmp_path: Path, case: str) -> None:
    """Each of these once ended in a traceback (AttributeError, TypeError, OverflowError, RecursionError) or made
    loading fetch weights from the network or read another file."""
    from dfkd.models import load_model

    change, reason = CRAFTED_HEADERS[case]
    path = _with_header(make_tiny_model(tmp_path / "tiny.safetensors"), tmp_path / "crafted.safetensors", change)
    with pytest.raises(ModelFileError, match=reason) as caught:
        load_model(path)
    assert str(path) in str(caught.value)
    result = CliRunner().invoke(app, ["info", str(path)])  # reads the card only: the kwargs cases show it
    assert result.exit_code in (0, 2) and isinstance(result.exception, (SystemExit, type(None))), result.output


def test_architecture_arguments_asking_for_more_weights_than_the_file_holds_are_refused(tmp_path: Path) -> None:
    """A 700 KB file whose card asked for a huge layer allocated it (+540 MB) before the weights were compared."""
    from dfkd.models import load_model

    source = make_tiny_model(tmp_path / "tiny.safetensors")
    huge = {"name": "resnet18", "kwargs": {"head_hidden": 250_000}, "digest": None}
    crafted = _with_header(source, tmp_path / "big.safetensors", lambda h: _set_card(h, **huge))
    with pytest.raises(ModelFileError, match="more than the file holds"):
        load_model(crafted)


def test_state_dict_files_that_nest_in_a_cycle_or_have_other_keys_are_refused(tmp_path: Path) -> None:
    """A 1 KB .pth whose dict contains itself made the loader spin forever; integer keys gave a traceback."""
    from dfkd.models.weights import read_state_dict_file

    cycle: dict = {"x": 1}
    cycle["state_dict"] = cycle
    torch.save(cycle, tmp_path / "cycle.pth")
    with pytest.raises(ModelFileError, match="nested more than 8 dicts deep"):
        read_state_dict_file(tmp_path / "cycle.pth")
    torch.save({1: torch.zeros(2), 2: torch.zeros(2)}, tmp_path / "ints.pth")
    with pytest.raises(ModelFileError, match="keys that are not text"):
        read_state_dict_file(tmp_path / "ints.pth")
