"""An ensemble of trained models is one model file whose logits are its members' mean, usable as an online teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.distill.frozen_teacher import load_frozen_teacher
from dfkd.models import create_model, load_model, read_model_card, save_model
from dfkd.models.ensemble import build_ensemble

CROP = {"detector": "yunet", "margin": 0.3, "size": 256}


def _member(tmp_path: Path, name: str, seed: int, **card) -> Path:
    torch.manual_seed(seed)
    model = create_model("resnet8_fast").eval()
    path = tmp_path / f"{name}.safetensors"
    save_model(model, path, {"face_crop": CROP, **card})
    return path


@pytest.fixture
def members(tmp_path: Path) -> list[Path]:
    return [_member(tmp_path, f"seed{seed}", seed) for seed in (1, 2, 3)]


def test_the_ensemble_file_scores_the_mean_of_its_members_logits(members: list[Path], tmp_path: Path) -> None:
    model, card = build_ensemble(members)
    path = tmp_path / "ensemble.safetensors"
    save_model(model, path, card)
    loaded, loaded_card = load_model(path)
    images = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.stack([load_model(member)[0](images) for member in members]).mean(dim=0)
        assert torch.allclose(loaded(images), expected, atol=1e-6)
        assert not torch.allclose(loaded(images), load_model(members[0])[0](images), atol=1e-3)
    assert loaded_card.face_crop is not None and loaded_card.face_crop.margin == 0.3
    assert loaded_card.preprocessing == read_model_card(members[0]).preprocessing
    assert loaded_card.metrics["members"] == [str(member) for member in members]


def test_an_ensemble_teaches_online_like_any_teacher(members: list[Path], tmp_path: Path) -> None:
    path = tmp_path / "ensemble.safetensors"
    model, card = build_ensemble(members)
    save_model(model, path, card)
    view = read_model_card(path).preprocessing.as_dict()
    teacher = load_frozen_teacher(path, view, "cpu", channels_last=False)  # batch-norm folded, as in training
    images = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.stack([load_model(member)[0](images) for member in members]).mean(dim=0)
    assert torch.allclose(teacher(images), expected, atol=1e-4)
    with pytest.raises(ValueError, match="attention transfer"):
        load_frozen_teacher(path, view, "cpu", channels_last=False, record_features=True)


def test_members_fed_differently_are_refused_by_name(members: list[Path], tmp_path: Path) -> None:
    wider = _member(tmp_path, "wider", 4, face_crop={**CROP, "margin": 0.1})
    with pytest.raises(ValueError, match="wider.safetensors.*framed alike"):
        build_ensemble([members[0], wider])
    other_view = tmp_path / "other_view.safetensors"
    model = create_model("resnet8_fast")
    model.dfkd_preprocessing = {"resize_size": 256, "input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    save_model(model, other_view, {"face_crop": CROP})
    with pytest.raises(ValueError, match="other_view.safetensors.*same input"):
        build_ensemble([members[0], other_view])
    with pytest.raises(ValueError, match="at least two"):
        build_ensemble(members[:1])


def test_the_command_writes_an_ensemble_and_refuses_nesting(members: list[Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "teacher.safetensors"
    result = runner.invoke(app, ["ensemble", *map(str, members), "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = read_model_card(out)
    assert card.architecture.name == "ensemble" and len(card.architecture.kwargs["members"]) == 3
    assert "dfkd evaluate" in (card.threshold_source or "")
    nested = runner.invoke(app, ["ensemble", str(out), str(members[0]), "--out", str(tmp_path / "nested.safetensors")])
    assert nested.exit_code == 2
    assert "already an ensemble" in nested.output
    assert not (tmp_path / "nested.safetensors").exists()


def test_an_ensemble_is_not_trained_by_name() -> None:
    with pytest.raises(ValueError, match="dfkd ensemble"):
        create_model("ensemble")
    with pytest.raises(ValueError, match="dfkd ensemble"):
        create_model("ensemble", pretrained="imagenet")


def test_the_decode_of_the_members_travels_into_the_ensemble_and_a_resave(tmp_path: Path) -> None:
    """scaled_decode was dropped (the view dict had no room for it): the ensemble decoded full-size, and so did a
    model loaded and saved again with new card fields."""
    scaled = {**create_model("resnet8_fast").dfkd_preprocessing, "scaled_decode": True}
    members = [_member(tmp_path, f"m{seed}", seed, preprocessing=scaled) for seed in (1, 2)]
    model, card = build_ensemble(members)
    save_model(model, tmp_path / "ensemble.safetensors", card)
    assert read_model_card(tmp_path / "ensemble.safetensors").preprocessing.scaled_decode is True
    save_model(load_model(members[0])[0], tmp_path / "resaved.safetensors", {"threshold": 0.4})
    assert read_model_card(tmp_path / "resaved.safetensors").preprocessing.scaled_decode is True
