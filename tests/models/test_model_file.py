"""The self-describing model file: round trips, metadata, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dfkd
from dfkd.card import FaceCrop, ModelCard
from dfkd.models import ModelFileError, create_model, load_model, read_model_card, save_model, update_card


def _perturb_batchnorm_buffers(model: torch.nn.Module) -> None:
    """Give running statistics non-default values so a round trip that drops buffers would show."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("resnet8", {}), ("resnet8_fast_w2", {}), ("mobilenet_v2", {"head_hidden": 64})]
)
def test_round_trip_gives_identical_outputs(tmp_path: Path, images_64: torch.Tensor, name: str, kwargs: dict) -> None:
    model = create_model(name, **kwargs)
    _perturb_batchnorm_buffers(model)
    model.eval()
    path = tmp_path / "model.safetensors"
    save_model(model, path, {"metrics": {"auc": 0.97}, "threshold": 0.42})
    loaded, card = load_model(path)
    assert not loaded.training
    assert loaded.dfkd_arch == {"name": name, "kwargs": kwargs}
    with torch.no_grad():
        assert torch.equal(loaded(images_64), model(images_64))
    assert card.metrics == {"auc": 0.97}
    assert card.threshold == 0.42


def test_metadata_describes_the_model(tmp_path: Path) -> None:
    model = create_model("efficientnet_lite0", dropout=0.2)
    path = tmp_path / "teacher.safetensors"
    save_model(model, path, {"training": {"manifest": "manifest-abc"}})
    card = read_model_card(path)
    assert card.format == "dfkd-model"
    assert card.format_version == 1
    assert card.architecture.name == "efficientnet_lite0"
    assert card.architecture.kwargs == {"dropout": 0.2}
    assert card.role == "teacher"
    assert card.preprocessing.as_dict() == {"resize_size": 256, "input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert card.labels == {"0": "real", "1": "fake"}
    assert card.threshold == 0.5
    assert card.metrics == {}
    assert card.face_crop is None
    assert card.dfkd_version == dfkd.__version__
    assert card.training is not None and card.training.manifest == "manifest-abc"


def test_saved_file_never_reloads_pretrained_weights(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save(create_model("resnet8").state_dict(), weights)
    model = create_model("resnet8", pretrained=weights)
    save_model(model, tmp_path / "m.safetensors")
    weights.unlink()
    assert read_model_card(tmp_path / "m.safetensors").architecture.model_dump(exclude={"digest"}) == {
        "name": "resnet8",
        "kwargs": {},
    }
    load_model(tmp_path / "m.safetensors")


def test_preprocessing_travels_with_the_model(tmp_path: Path) -> None:
    model = create_model("resnet8")
    model.dfkd_preprocessing = {"resize_size": 72, "input_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3}
    save_model(model, tmp_path / "m.safetensors")
    loaded, card = load_model(tmp_path / "m.safetensors")
    assert card.preprocessing.as_dict() == model.dfkd_preprocessing
    assert loaded.dfkd_preprocessing == {**model.dfkd_preprocessing, "scaled_decode": False}  # the whole record


def test_timm_teacher_round_trip(tmp_path: Path, images_64: torch.Tensor) -> None:
    model = create_model("timm/mobilenetv3_small_050", head_hidden=16).eval()
    save_model(model, tmp_path / "t.safetensors")
    loaded, _ = load_model(tmp_path / "t.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(images_64), model(images_64))


def test_save_is_atomic_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.safetensors"
    save_model(create_model("resnet8"), path)
    save_model(create_model("resnet8_fast"), path)
    assert read_model_card(path).architecture.name == "resnet8_fast"
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.safetensors"]


def test_only_registry_models_with_json_metadata_can_be_saved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="create_model"):
        save_model(torch.nn.Linear(2, 1), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="threshold"):
        save_model(create_model("resnet8"), tmp_path / "x.safetensors", {"threshold": 2.0})
    assert not list(tmp_path.iterdir())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("content", [b"", b"abc", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", b"x" * 64])
def test_not_a_safetensors_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"not a safetensors file|truncated"):
        load_model(path)


@pytest.mark.parametrize("keep_fraction", [0.001, 0.5, 0.999])
def test_truncated_file(tmp_path: Path, keep_fraction: float) -> None:
    path = tmp_path / "m.safetensors"
    save_model(create_model("resnet8"), path)
    data = path.read_bytes()
    path.write_bytes(data[: max(9, int(len(data) * keep_fraction))])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(path)


def test_safetensors_without_dfkd_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a dfkd model file"):
        read_model_card(path)
    with pytest.raises(ModelFileError, match="not a dfkd model file"):
        load_model(path)


def _write_with_record(path: Path, record: dict, tensors: dict[str, torch.Tensor] | None = None) -> None:
    save_file(tensors or {"weight": torch.zeros(2)}, str(path), metadata={"dfkd": json.dumps(record)})


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _write_with_record(path, {"format": "dfkd-model", "format_version": 1, "architecture": {"name": "resnet9000"}})
    with pytest.raises(ModelFileError, match=r"unknown architecture 'resnet9000'.*resnet8"):
        load_model(path)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _write_with_record(path, {"format": "dfkd-model", "format_version": 2, "architecture": {"name": "resnet8"}})
    with pytest.raises(ModelFileError, match="version 2"):
        load_model(path)


def test_key_mismatch_lists_the_keys(tmp_path: Path) -> None:
    state = {key: value.contiguous() for key, value in create_model("resnet8").state_dict().items()}
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "m.safetensors"
    record = {"format": "dfkd-model", "format_version": 1, "architecture": {"name": "resnet8", "kwargs": {}}}
    _write_with_record(path, record, state)
    with pytest.raises(ModelFileError, match=r"missing keys \[fc\.bias\].*unexpected keys \[extra\.weight\]"):
        load_model(path)


def test_shape_mismatch_is_a_model_file_error(tmp_path: Path) -> None:
    state = {key: value.contiguous() for key, value in create_model("resnet8_w2").state_dict().items()}
    path = tmp_path / "m.safetensors"
    _write_with_record(
        path, {"format": "dfkd-model", "format_version": 1, "architecture": {"name": "resnet8", "kwargs": {}}}, state
    )
    with pytest.raises(ModelFileError, match="do not fit 'resnet8'"):
        load_model(path)


def test_bad_kwargs_in_file_are_a_model_file_error(tmp_path: Path) -> None:
    state = {key: value.contiguous() for key, value in create_model("resnet8").state_dict().items()}
    path = tmp_path / "m.safetensors"
    record = {"format": "dfkd-model", "format_version": 1, "architecture": {"name": "resnet8", "kwargs": {"depth": 3}}}
    _write_with_record(path, record, state)
    with pytest.raises(ModelFileError, match="cannot rebuild 'resnet8'"):
        load_model(path)


def _resnet8_state() -> dict[str, torch.Tensor]:
    return {key: value.contiguous() for key, value in create_model("resnet8").state_dict().items()}


def test_a_file_in_the_first_dfkd_layout_still_loads(tmp_path: Path) -> None:
    # The record exactly as dfkd 0.1 wrote it (an untyped dict: trainer, evaluate --threshold auto and export keys).
    record = {
        "format": "dfkd-model",
        "format_version": 1,
        "architecture": {"name": "resnet8", "kwargs": {}},
        "role": "student",
        "preprocessing": {"resize_size": 110, "input_size": 96, "mean": [0.485, 0.456, 0.406], "std": [0.229] * 3},
        "labels": {"0": "real", "1": "fake"},
        "threshold": 0.37,
        "threshold_source": "val EER",
        "metrics": {"epoch": 3, "val_loss": 0.41, "val_auc": 0.93, "val_accuracy": 0.88},
        "training": {
            "distill": {"loss": "kl", "alpha": 0.5},
            "teacher_val_auc": 0.97,
            "manifest": "runs/m.csv",
            "monitor": "val_auc",
        },
        "dfkd_version": "0.1.0",
    }
    path = tmp_path / "old.safetensors"
    _write_with_record(path, record, _resnet8_state())
    model, card = load_model(path)
    assert card.threshold == 0.37 and card.threshold_source == "val EER"
    assert card.preprocessing.input_size == 96 and model.dfkd_preprocessing["resize_size"] == 110
    assert card.face_crop is None  # not recorded then: inference keeps the default framing
    assert card.training is not None and card.training.teacher_val_auc == 0.97
    assert card.metrics["val_auc"] == 0.93


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"threshold": "nan"}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"preprocessing": {"resize_size": 100000, "input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}}, "resize"),
        ({"preprocessing": {"resize_size": 256, "input_size": 224, "mean": [0.5] * 3, "std": [0.0] * 3}}, "std"),
        ({"labels": {"0": "real"}}, "labels"),
        ({"face_crop": {"detector": "yunet", "margin": -1}}, "face_crop.margin"),
    ],
)
def test_out_of_range_cards_are_refused_naming_the_field(tmp_path: Path, change: dict, field: str) -> None:
    record = {"format": "dfkd-model", "format_version": 1, "architecture": {"name": "resnet8", "kwargs": {}}}
    path = tmp_path / "m.safetensors"
    # json.dumps writes NaN as a bare token, as a hand-edited or hostile file could
    _write_with_record(path, {**record, **change}, _resnet8_state())
    with pytest.raises(ModelFileError, match=field):
        read_model_card(path)


def test_face_crop_round_trips_and_update_card_keeps_the_weights(tmp_path: Path, images_64: torch.Tensor) -> None:
    model = create_model("resnet8").eval()
    path = tmp_path / "m.safetensors"
    save_model(model, path, {"face_crop": {"detector": "yunet", "margin": 0.0, "size": 256}})
    card = read_model_card(path)
    assert card.face_crop == FaceCrop(detector="yunet", margin=0.0, size=256)
    update_card(path, card.model_copy(update={"threshold": 0.25}))
    loaded, updated = load_model(path)
    assert updated.threshold == 0.25 and updated.face_crop == card.face_crop
    with torch.no_grad():
        assert torch.equal(loaded(images_64), model(images_64))
    assert isinstance(updated, ModelCard)


def test_same_shaped_weights_under_another_architecture_name_are_refused(tmp_path: Path) -> None:
    fast = create_model("resnet8_fast")
    path = tmp_path / "fast.safetensors"
    save_model(fast, path)
    card = read_model_card(path)
    assert card.architecture.digest is not None and len(card.architecture.digest) == 64
    record = {**card.to_json_dict(), "architecture": {**card.to_json_dict()["architecture"], "name": "resnet8"}}
    relabelled = tmp_path / "relabelled.safetensors"
    _write_with_record(relabelled, record, {k: v.contiguous() for k, v in fast.state_dict().items()})
    with pytest.raises(ModelFileError, match=r"another network than 'resnet8'.*digest"):
        load_model(relabelled)
    # A card without a digest (files written before it was recorded) loads as before; saving stamps it.
    undigested = {**record, "architecture": {"name": "resnet8_fast", "kwargs": {}}}
    older = tmp_path / "older.safetensors"
    _write_with_record(older, undigested, {k: v.contiguous() for k, v in fast.state_dict().items()})
    model, old_card = load_model(older)
    assert old_card.architecture.digest is None
    save_model(model, older, old_card)
    assert read_model_card(older).architecture.digest == card.architecture.digest
    assert card.architecture.digest != _saved_digest(create_model("resnet8"), tmp_path)


def _saved_digest(model: torch.nn.Module, folder: Path) -> str | None:
    save_model(model, folder / "other.safetensors")
    return read_model_card(folder / "other.safetensors").architecture.digest


def test_info_shows_nested_training_fields_one_per_line_with_short_numbers() -> None:
    from dfkd.card import describe_card

    training = {
        "generalisation": {"unseen_source": {"swaps": {"auc": 0.6182000000000001, "measured_with": "a student"}}},
        "blind_spots": ["small faces: under 100 px", "profile views"],
    }
    card = ModelCard.model_validate({"architecture": {"name": "resnet8_fast"}, "training": training})
    rows = dict(describe_card(card))
    assert rows["training generalisation"] == (
        "unseen_source:\n  swaps:\n    auc: 0.6182\n    measured_with: a student"
    )
    assert rows["training blind_spots"] == "- small faces: under 100 px\n- profile views"
