"""The model registry: names, roles, duplicates, recorded architecture and preprocessing."""

from __future__ import annotations

import pytest
import torch

from dfkd.models import create_model, default_preprocessing, list_models, register_model, registry

STUDENTS = [
    "resnet8",
    "resnet8_fast",
    "resnet8_fast_hp",
    "resnet8_fast_w2",
    "resnet8_fast_w4",
    "resnet8_s2d",
    "resnet8_w2",
    "resnet8_w4",
]
TEACHERS = ["efficientnet_b0", "efficientnet_b7", "efficientnet_lite0", "mobilenet_v2", "resnet18"]
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register names without leaking them into the real registry."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_list_models_by_role() -> None:
    assert list_models("student") == STUDENTS
    assert list_models("teacher") == TEACHERS
    assert list_models() == sorted(STUDENTS + TEACHERS)
    with pytest.raises(ValueError, match="role"):
        list_models("oracle")


@pytest.mark.usefixtures("scratch_registry")
def test_registering_a_name_twice_is_an_error() -> None:
    @register_model("tiny_test_model", role="student")
    def tiny(*, pretrained: str | None = None) -> torch.nn.Module:
        return torch.nn.Linear(1, 1)

    assert "tiny_test_model" in list_models("student")
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_model", role="student")(tiny)
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet8", role="student")(tiny)


def test_register_rejects_bad_role_and_timm_prefix() -> None:
    with pytest.raises(ValueError, match="role"):
        register_model("x", role="mentor")
    with pytest.raises(ValueError, match="reserved"):
        register_model("timm/x", role="teacher")


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet9'.*resnet8"):
        create_model("resnet9")
    with pytest.raises(ValueError, match="timm does not know"):
        create_model("timm/not_a_real_model_xyz")


def test_bad_kwargs_name_the_model() -> None:
    with pytest.raises(TypeError, match="resnet8"):
        create_model("resnet8", depth=50)


def test_create_model_records_arch_without_pretrained(tmp_path) -> None:
    student = create_model("resnet8")
    torch.save(student.state_dict(), tmp_path / "w.pth")
    reloaded = create_model("resnet8", pretrained=str(tmp_path / "w.pth"))
    assert reloaded.dfkd_arch == {"name": "resnet8", "kwargs": {}}
    assert reloaded.dfkd_role == "student"
    teacher = create_model("mobilenet_v2", head_hidden=64, dropout=0.1)
    assert teacher.dfkd_arch == {"name": "mobilenet_v2", "kwargs": {"head_hidden": 64, "dropout": 0.1}}
    assert teacher.dfkd_role == "teacher"


@pytest.mark.parametrize("name", ["resnet8", "resnet8_fast", "mobilenet_v2", "efficientnet_b0", "resnet18"])
def test_default_preprocessing_is_the_reference(name: str) -> None:
    assert default_preprocessing(name) == {"resize_size": 256, "input_size": 224, **IMAGENET}


def test_lite0_preprocessing_is_half_half() -> None:
    expected = {"resize_size": 256, "input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert default_preprocessing("efficientnet_lite0") == expected
    assert default_preprocessing("timm/tf_efficientnet_lite0") == expected
    assert create_model("efficientnet_lite0").dfkd_preprocessing == expected


def test_default_preprocessing_is_a_copy() -> None:
    default_preprocessing("resnet8")["mean"][0] = 9.0
    assert default_preprocessing("resnet8")["mean"][0] == 0.485


def test_timm_prefix_builds_a_teacher_with_the_head() -> None:
    teacher = create_model("timm/mobilenetv3_small_050", head_hidden=32)
    assert teacher.dfkd_arch == {"name": "timm/mobilenetv3_small_050", "kwargs": {"head_hidden": 32}}
    assert teacher.dfkd_role == "teacher"
    assert [type(layer).__name__ for layer in teacher.head] == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert teacher.head[0].out_features == 32
    with torch.no_grad():
        fake_logits = teacher.eval()(torch.randn(2, 3, 64, 64))
    assert fake_logits.shape == (2,)
    assert "timm/mobilenetv3_small_050" not in list_models()
