"""Hostile or careless training input: refused up front in one line naming the key, or handled as users expect."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.config import ConfigError, load_config
from dfkd.models import list_models
from dfkd.train import train
from dfkd.train.setup import check_model_settings
from tests.conftest import TINY


def _filtered_manifest(source: Path, target: Path, drop) -> Path:
    """A copy of ``source`` without the rows for which ``drop(row)`` is true."""
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if not drop(row))
    return target


def _train_cli(manifest: Path, out: Path, *extra: str, config: str | None = None):
    args = ["train", "--out", str(out)]
    if config is not None:
        args += ["--config", config]
    for item in [*TINY, f"data.manifest={manifest}", "model.name=resnet8_fast", "train.epochs=1", *extra]:
        args += ["--set", item]
    return CliRunner().invoke(app, args)


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output


def test_single_class_val_keeps_the_last_epoch_and_says_so(easy_manifest: Path, tmp_path: Path) -> None:
    manifest = _filtered_manifest(
        easy_manifest, tmp_path / "m.csv", lambda row: row["split"] == "val" and row["label"] == "fake"
    )
    result = _train_cli(manifest, tmp_path / "run", "train.epochs=2", "train.patience=1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.safetensors").exists()
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "last epoch: val_auc nan at epoch 2; model written" in output  # patience=1 did not stop it at epoch 1
    assert "val split holds one class only" in output


def test_single_class_train_split_is_refused_before_training(easy_manifest: Path, tmp_path: Path) -> None:
    manifest = _filtered_manifest(easy_manifest, tmp_path / "m.csv", lambda row: row["label"] == "fake")
    result = _train_cli(manifest, tmp_path / "run")
    _one_line_error(result, "train split holds one class only", "real")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_no_model_file_means_no_model_written_claim(easy_manifest: Path, tmp_path: Path, monkeypatch) -> None:
    import dfkd.train.loop as loop

    monkeypatch.setattr(loop, "_improved", lambda config, value, best: False)  # as if every val_loss were NaN
    result = _train_cli(easy_manifest, tmp_path / "run", "train.monitor=val_loss")
    assert result.exit_code == 1 and "no model written" in result.output
    assert "model written to" not in result.output


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.resize_size=5000", "data.resize_size"),
        ("data.input_size=4097", "data.input_size"),
        ("optim.lr=inf", "optim.lr"),
        ("data.mean=[nan,0,0]", "data.mean"),
        ("data.std=[0,0,0]", "data.std"),
        ("data.std=[1,-1,1]", "data.std"),
        ("train.epochs=true", "train.epochs"),
        ("data.batch_size=2.5", "data.batch_size"),
        ("train.devices=-2", "train.devices"),
        ("train.devices=cpu", "train.devices"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_yaml_ints_and_device_forms_still_pass() -> None:
    config = load_config(None, ["train.epochs=3", "data.resize_size=4096", "train.devices=-1", "optim.lr=1"])
    assert config.train.epochs == 3 and config.data.resize_size == 4096 and config.train.devices == -1
    assert load_config(None, ["train.devices='0,1'"]).train.devices == "0,1"


def test_input_larger_than_resize_warns(easy_manifest: Path, tmp_path: Path, caplog) -> None:
    config = load_config(None, [*TINY, f"data.manifest={easy_manifest}", "train.epochs=1", "data.input_size=48"])
    with caplog.at_level(logging.WARNING):
        train(config, tmp_path / "run")
    assert "data.input_size 48 > data.resize_size 40" in caplog.text


def test_unknown_model_kwargs_and_cpu_devices_are_one_line_errors(easy_manifest: Path, tmp_path: Path) -> None:
    _one_line_error(_train_cli(easy_manifest, tmp_path / "k", "model.kwargs={evil: 1}"), "model.kwargs", "evil")
    _one_line_error(_train_cli(easy_manifest, tmp_path / "d", "train.devices=-1"), "train.devices", "CPU")


def test_model_kwargs_are_checked_before_any_data_is_read(tmp_path: Path) -> None:
    # the manifest does not exist: a kwargs typo must be named first, not after the data (and a teacher) are loaded
    config = load_config(None, [f"data.manifest={tmp_path / 'absent.csv'}", "model.kwargs={widht: 2}"])
    with pytest.raises(ConfigError, match="model.kwargs.*widht"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", list_models())
def test_the_kwargs_check_passes_every_registered_model_and_leaves_the_random_state(name: str) -> None:
    # the check builds on the meta device: it must not refuse a model that trains, nor shift the run's initial weights
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    check_model_settings(load_config(None, [f"model.name={name}"]))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_binary_config_file_is_named(easy_manifest: Path, tmp_path: Path) -> None:
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\xd0\xff\x00\x81" * 64)
    _one_line_error(_train_cli(easy_manifest, tmp_path / "run", config=str(binary)), "weights.yaml", "not UTF-8")


def test_config_preset_by_name_and_unknown_names_listed(easy_manifest: Path, tmp_path: Path) -> None:
    result = _train_cli(easy_manifest, tmp_path / "run", config="demo_student")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.safetensors").exists()
    _one_line_error(_train_cli(easy_manifest, tmp_path / "typo", config="demo_studnt"), "demo_studnt", "demo_teacher")


@pytest.mark.parametrize("sub", ["", "sub"])
def test_out_that_is_a_file_is_refused_before_training(easy_manifest: Path, tmp_path: Path, sub: str) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("not a run\n")
    out = existing / sub if sub else existing
    result = _train_cli(easy_manifest, out)
    expected = f"{out}: {existing} is not a folder" if sub else f"{out}: is not a folder"
    _one_line_error(result, f"--out {expected}")
    assert existing.read_text() == "not a run\n"


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text("optim:\n  lr: 0.1\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match="'lr' is given twice"):
        load_config(config)
    hostile = tmp_path / "tag.yaml"  # the duplicate-key loader is still PyYAML's safe one
    hostile.write_text(f'optim: !!python/object/apply:os.system ["touch {tmp_path / "ran"}"]\n')
    with pytest.raises(ConfigError):
        load_config(hostile)
    assert not (tmp_path / "ran").exists()


def test_a_val_split_left_with_one_class_by_self_blending_keeps_the_last_epoch(
    easy_manifest: Path, tmp_path: Path
) -> None:
    """Self-blending used to be taken as proof that validation holds both classes; with no real left in it val_auc
    was NaN every epoch and no model file was ever written."""
    manifest = _filtered_manifest(
        easy_manifest, tmp_path / "m.csv", lambda row: row["split"] == "val" and row["label"] == "real"
    )
    result = _train_cli(manifest, tmp_path / "run", "data.synthetic_fakes=sbi", "train.epochs=2", "train.patience=1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.safetensors").exists()
    output = " ".join(result.output.split())
    assert "val split holds one class only (0 real," in output and "fake after self-blending)" in output
    refused = _train_cli(easy_manifest, tmp_path / "run2", "data.synthetic_fakes=sbi", "data.synthetic_share=1.0")
    _one_line_error(refused, "data.synthetic_share")
