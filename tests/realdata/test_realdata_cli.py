"""The crop-faces, cross-source and robustness commands: their output files exist and parse."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data.manifest import read_manifest
from tests.conftest import TINY as CONFTEST_TINY
from tests.conftest import YUNET
from tests.realdata.helpers import astronaut, blank

runner = CliRunner()
TINY = [*CONFTEST_TINY, "train.epochs=1", "model.name=resnet8_fast"]


def _invoke(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_crop_faces_command_writes_the_tree_and_csvs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dfkd.faces.detect import available_detectors

    if YUNET.is_file():
        monkeypatch.setenv("DFKD_FACE_MODEL", str(YUNET))  # the CLI reads it when --face-model is not given
    elif not available_detectors(None):
        pytest.skip("no face detector here")
    root = tmp_path / "data"
    (root / "fake").mkdir(parents=True)
    astronaut().save(root / "fake" / "face.jpg")
    blank().save(root / "fake" / "empty.jpg")
    out = tmp_path / "faces"
    result = _invoke(["crop-faces", str(root), "--out", str(out), "--size", "64", "--workers", "1"])
    assert "1 of 2 images cropped" in result.output
    assert (out / "fake" / "face.jpg").is_file() and not (out / "fake" / "empty.jpg").exists()
    with open(out / "faces.csv", newline="") as handle:
        statuses = {row["path"]: row["status"] for row in csv.DictReader(handle)}
    assert statuses == {"fake/face.jpg": "ok", "fake/empty.jpg": "no_face"}
    with open(out / "no_face.csv", newline="") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == ["fake/empty.jpg"]
    settings = json.loads((out / "crop.json").read_text())
    assert settings["complete"] and settings["n_ok"] == 1
    assert settings["detector"] == ("yunet" if YUNET.is_file() else available_detectors(None)[0])


def test_robustness_command_writes_into_the_run_folder(tiny_model: Path, easy_manifest: Path) -> None:
    args = ["robustness", str(tiny_model), "--manifest", str(easy_manifest), "--num-workers", "0"]
    result = _invoke([*args, "--perturbation", "jpeg", "--perturbation", "brightness_contrast"])
    out = tiny_model.parent / "robustness"  # the default: where `dfkd report RUN_DIR` looks
    assert "written to" in result.output
    data = json.loads((out / "robustness.json").read_text())
    perturbations = data["models"][0]["perturbations"]
    assert set(perturbations) == {"jpeg", "brightness_contrast"}
    assert all(row["severity"] == [0, 1, 2, 3, 4, 5] and len(row["auc"]) == 6 for row in perturbations.values())
    markdown = (out / "robustness.md").read_text()
    assert markdown.count("| brightness_contrast |") == 3  # AUC, accuracy and parameter tables
    assert (out / "robustness.png").stat().st_size > 0


def test_cross_source_command_has_one_cell_per_pair(two_source_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "cross"
    args = ["cross-source", "--manifest", str(two_source_manifest), "--config", str(tmp_path / "recipe.yaml")]
    (tmp_path / "recipe.yaml").write_text("model: {name: resnet8_fast}\n")
    args += ["--out", str(out), "--reals-sbi", "--all-but-fakes"]
    args += [item for override in TINY for item in ("--set", override)]
    _invoke(args)
    data = json.loads((out / "cross_source.json").read_text())
    assert data["test_sources"] == ["alpha", "beta"]
    names = ["alpha", "beta", "all_but_alpha_fakes", "all_but_beta_fakes", "all", "reals_sbi"]
    assert [t["name"] for t in data["train_sets"]] == names and set(data["matrix"]) == set(names)
    for row in data["matrix"].values():
        assert set(row) == {"alpha", "beta"}
        assert all(cell["n"] == 8 and 0.0 <= cell["accuracy"] <= 1.0 for cell in row.values())
        assert all(0.0 <= cell["fpr"] <= 1.0 for cell in row.values())  # false positives on each source's reals
    reals_sbi = read_manifest(out / "manifests" / "reals_sbi.csv")
    assert {s.label for s in reals_sbi.samples} == {"real"}  # no labelled fake: the fakes are self-blended
    trained = {(s.source, s.label) for s in read_manifest(out / "manifests" / "all_but_alpha_fakes.csv").samples}
    assert trained == {("alpha", "real"), ("beta", "real"), ("beta", "fake")}
    assert yaml.safe_load((out / "runs" / "reals_sbi" / "config.yaml").read_text())["data"]["synthetic_fakes"] == "sbi"
    markdown = (out / "cross_source.md").read_text()
    assert markdown.count("| all |") == 3 and "alpha (n=8)" in markdown and "false positives on reals" in markdown
    assert (out / "cross_source.png").stat().st_size > 0
    assert (out / "runs" / "alpha" / "model.safetensors").is_file()
    # A rerun trains nothing again and writes the same matrix.
    _invoke(args)
    assert json.loads((out / "cross_source.json").read_text())["matrix"] == data["matrix"]


def test_cross_source_with_one_source_fails_clearly(easy_manifest: Path, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("model: {name: resnet8_fast}\n")
    result = runner.invoke(
        app,
        [
            "cross-source",
            "--manifest",
            str(easy_manifest),
            "--config",
            str(tmp_path / "recipe.yaml"),
            "--out",
            str(tmp_path / "cross"),
        ],
    )
    assert result.exit_code == 2
    assert "at least two sources" in result.output
