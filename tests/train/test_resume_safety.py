"""Resuming executes nothing from the checkpoint, refuses damaged or mismatched checkpoints, and finished runs are
not silently overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.config import load_config
from dfkd.train import train
from dfkd.train.checkpoint import CheckpointError, read_checkpoint
from dfkd.train.loop import RunFolderError
from tests.conftest import TINY


def _config(manifest: Path, *extra: str):
    return load_config(None, [*TINY, f"data.manifest={manifest}", "train.epochs=1", *extra])


class _Payload:
    """Pickles to a call of ``Path.touch``: what a crafted checkpoint runs when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def finished_run(easy_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    train(_config(easy_manifest, "model.name=resnet8_fast"), run)
    return run


def test_a_crafted_pickle_checkpoint_is_refused_without_running_it(easy_manifest: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    torch.save({"model": _Payload(marker)}, run / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"last\.ckpt: not a safetensors file"):
        train(_config(easy_manifest), run, resume=True)
    assert not marker.exists()


def test_the_checkpoint_is_safetensors_and_json(finished_run: Path) -> None:
    tensors, record = read_checkpoint(finished_run / "last.ckpt")
    assert all(isinstance(value, torch.Tensor) for value in tensors.values())
    assert {"model.fc.weight", "rng.torch", "rng.numpy"} <= set(tensors)
    assert record["architecture"]["name"] == "resnet8_fast" and len(record["architecture"]["digest"]) == 64
    assert record["loop"]["epoch"] == 1 and record["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.003)
    json.dumps(record)  # plain JSON all through
    assert not list(finished_run.glob(".*.tmp"))  # written through a temporary file renamed into place


@pytest.mark.parametrize("keep", [0, 7, 0.5, 0.999])
def test_a_truncated_checkpoint_is_refused_naming_the_file(
    finished_run: Path, easy_manifest: Path, tmp_path: Path, keep: float
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    data = (run / "last.ckpt").read_bytes()
    (run / "last.ckpt").write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError, match=rf"{run / 'last.ckpt'}.*(truncated|not a safetensors)"):
        train(_config(easy_manifest, "model.name=resnet8_fast", "train.epochs=2"), run, resume=True)


def test_resuming_as_another_architecture_is_refused_unless_overwriting(
    finished_run: Path, easy_manifest: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    # resnet8 has the very same tensor shapes as resnet8_fast: only the recorded architecture tells them apart.
    other = _config(easy_manifest, "model.name=resnet8", "train.epochs=2")
    with pytest.raises(CheckpointError, match=r"holds 'resnet8_fast' but the config builds 'resnet8'"):
        train(other, run, resume=True)
    result = train(other, run, resume=True, overwrite=True)
    assert [row["epoch"] for row in result.history] == [1, 2]  # started afresh
    assert read_checkpoint(run / "last.ckpt")[1]["architecture"]["name"] == "resnet8"


def test_training_into_a_finished_run_is_refused_unless_asked(
    finished_run: Path, easy_manifest: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(RunFolderError, match=r"already holds a run \(model\.safetensors, last\.ckpt.*--overwrite"):
        train(_config(easy_manifest, "model.name=resnet8_fast"), run)
    (run / "last.ckpt").rename(run / "kept.ckpt")  # --resume without a checkpoint would start afresh over the run
    with pytest.raises(RunFolderError, match=r"already holds a run \(model\.safetensors, metrics\.csv\)"):
        train(_config(easy_manifest, "model.name=resnet8_fast"), run, resume=True)
    (run / "kept.ckpt").rename(run / "last.ckpt")
    assert (run / "model.safetensors").read_bytes() == before
    args = ["train", "--out", str(run)]
    for item in [*TINY, f"data.manifest={easy_manifest}", "train.epochs=1"]:
        args += ["--set", item]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output, refused.output
    replaced = CliRunner().invoke(app, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert read_checkpoint(run / "last.ckpt")[1]["architecture"]["name"] == "resnet8"


def test_resuming_a_run_that_stopped_early_trains_no_more(easy_manifest: Path, tmp_path: Path) -> None:
    """Patience spent is the end of the run: --resume used to train one more epoch and could replace the model."""
    from dfkd.train.checkpoint import STATE_KEY
    from dfkd.utils import save_tensors

    run = tmp_path / "run"
    config = _config(easy_manifest, "model.name=resnet8_fast", "train.epochs=3", "train.patience=2")
    train(_config(easy_manifest, "model.name=resnet8_fast", "train.epochs=1"), run)
    tensors, record = read_checkpoint(run / "last.ckpt")
    record["loop"]["bad_epochs"] = 2  # as if epochs 2 and 3 of a longer run had not improved
    save_tensors(tensors, run / "last.ckpt", metadata={STATE_KEY: json.dumps(record)})
    model_bytes = (run / "model.safetensors").read_bytes()
    result = train(config, run, resume=True)
    assert len(result.history) == 1 and (run / "model.safetensors").read_bytes() == model_bytes


def test_resuming_with_settings_the_checkpoint_cannot_honour_is_refused(
    finished_run: Path, easy_manifest: Path, tmp_path: Path
) -> None:
    """The checkpoint carries the optimiser and schedule: a new learning rate would be ignored, so it is refused by
    name; more epochs are fine; --overwrite starts afresh."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config_before = (run / "config.yaml").read_text()
    with pytest.raises(CheckpointError, match=r"other optim\.lr, optim\.weight_decay than given now.*--overwrite"):
        train(
            _config(easy_manifest, "model.name=resnet8_fast", "optim.lr=0.01", "optim.weight_decay=0.1"),
            run,
            resume=True,
        )
    assert (run / "config.yaml").read_text() == config_before  # refused before anything was written
    more = train(
        _config(easy_manifest, "model.name=resnet8_fast", "train.epochs=2", "data.num_workers=0"), run, resume=True
    )
    assert [row["epoch"] for row in more.history] == [1, 2]  # continued
    fresh = train(_config(easy_manifest, "model.name=resnet8_fast", "optim.lr=0.01"), run, resume=True, overwrite=True)
    assert [row["epoch"] for row in fresh.history] == [1]  # started afresh
    assert read_checkpoint(run / "last.ckpt")[1]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)
