"""Teachers: the reference B7, small CPU teachers, forward passes and strict loading of local weight files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dfkd.models import ModelFileError, count_params, create_model, list_models

HEAD_LAYERS = ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]


def test_efficientnet_b7_matches_the_reference() -> None:
    teacher = create_model("efficientnet_b7")
    assert count_params(teacher) == 65_099_729
    assert [type(layer).__name__ for layer in teacher.head] == HEAD_LAYERS
    assert (teacher.head[0].in_features, teacher.head[0].out_features) == (2560, 512)
    assert teacher.head[3].p == 0.3
    assert teacher.head[4].out_features == 1


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_fake_logits_at_64(name: str, images_64: torch.Tensor) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        fake_logits = model(images_64)
    assert fake_logits.shape == (2,)
    assert fake_logits.dtype == torch.float32
    assert torch.isfinite(fake_logits).all()


def test_head_kwargs_change_the_head() -> None:
    teacher = create_model("resnet18", head_hidden=128, dropout=0.5)
    assert teacher.head[0].in_features == 512
    assert teacher.head[0].out_features == 128
    assert teacher.head[3].p == 0.5


def test_backbone_state_dict_loads_strictly(tmp_path: Path, images_64: torch.Tensor) -> None:
    source = create_model("mobilenet_v2").eval()
    path = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), path)
    teacher = create_model("mobilenet_v2", pretrained=str(path)).eval()
    assert torch.equal(teacher.pooled_features(images_64), source.pooled_features(images_64))


def test_original_classifier_keys_are_ignored(tmp_path: Path) -> None:
    import torchvision

    imagenet_model = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18_imagenet_layout.pth"
    torch.save(imagenet_model.state_dict(), path)  # includes fc.weight / fc.bias
    teacher = create_model("resnet18", pretrained=path)
    assert torch.equal(teacher.backbone.conv1.weight, imagenet_model.conv1.weight)


def test_whole_model_safetensors_loads_strictly(tmp_path: Path, images_64: torch.Tensor) -> None:
    source = create_model("efficientnet_b0").eval()
    path = tmp_path / "teacher.safetensors"
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, str(path))
    teacher = create_model("efficientnet_b0", pretrained=path).eval()
    with torch.no_grad():
        assert torch.equal(teacher(images_64), source(images_64))


def test_nested_checkpoint_with_module_prefix_loads(tmp_path: Path) -> None:
    source = create_model("resnet8")
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    student = create_model("resnet8", pretrained=path)
    assert torch.equal(student.fc.weight, source.fc.weight)


def test_mismatched_weights_list_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = create_model("mobilenet_v2").backbone.state_dict()
    state.pop("features.0.0.weight")
    state["features.99.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    expected = r"missing keys \[features\.0\.0\.weight\].*unexpected keys \[features\.99"
    with pytest.raises(ModelFileError, match=expected):
        create_model("mobilenet_v2", pretrained=path)


def test_whole_model_keys_of_another_head_size_fail(tmp_path: Path) -> None:
    path = tmp_path / "teacher.pth"
    torch.save(create_model("resnet18", head_hidden=64).state_dict(), path)
    with pytest.raises(ModelFileError, match="wrong shape"):
        create_model("resnet18", pretrained=path)


def test_wrong_student_weights_fail(tmp_path: Path) -> None:
    path = tmp_path / "w2.pth"
    torch.save(create_model("resnet8_w2").state_dict(), path)
    with pytest.raises(ModelFileError, match="wrong shape"):
        create_model("resnet8", pretrained=path)


def test_missing_or_unreadable_weight_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        create_model("resnet18", pretrained=tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable torch state dict"):
        create_model("resnet18", pretrained=garbage)


def test_imagenet_download_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(_arch: str) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models, "get_model_weights", offline)
    with pytest.raises(RuntimeError, match=r"could not obtain torchvision's ImageNet weights.*pretrained=<local"):
        create_model("resnet18", pretrained="imagenet")


def test_timm_imagenet_download_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    real_create = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        if pretrained:
            raise OSError("network is unreachable")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="could not obtain timm's ImageNet weights"):
        create_model("timm/mobilenetv3_small_050", pretrained="imagenet")
