"""The ResNet8 student family: the reference numbers, the fast variant, widths and feature maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd.deploy.onnx import export_onnx
from dfkd.models import count_flops, count_params, create_model, save_model
from dfkd.models.resnet_small import HighPassResidual, SmallResNet, SpaceToDepth

RESNET8_PARAMS = 174_673


def test_resnet8_matches_the_reference() -> None:
    student = create_model("resnet8")
    assert count_params(student) == RESNET8_PARAMS
    assert round(count_flops(student, 224) / 1e9, 2) == 2.61


def test_resnet8_fast_is_same_size_and_at_least_10x_cheaper() -> None:
    reference, fast = create_model("resnet8"), create_model("resnet8_fast")
    assert abs(count_params(fast) - RESNET8_PARAMS) <= 0.15 * RESNET8_PARAMS
    assert count_flops(fast, 224) * 10 <= count_flops(reference, 224)


@pytest.mark.parametrize(("name", "channels"), [("resnet8_w2", (32, 64, 128)), ("resnet8_w4", (64, 128, 256))])
def test_width_multipliers_widen_every_stage(name: str, channels: tuple[int, ...]) -> None:
    student = create_model(name).eval()
    with torch.no_grad():
        stage_outputs = student.features(torch.randn(1, 3, 64, 64))
    assert tuple(output.shape[1] for output in stage_outputs) == channels
    assert count_params(student) > count_params(create_model("resnet8")) * (channels[0] // 16) ** 2 * 0.9


def test_fast_wide_variants_keep_the_fast_flop_ratio() -> None:
    for width in ("w2", "w4"):
        fast, reference = create_model(f"resnet8_fast_{width}"), create_model(f"resnet8_{width}")
        assert count_params(fast) == count_params(reference)
        # The ratio does not depend on the input size (the head is negligible); 64x64 keeps the test fast.
        assert count_flops(fast, 64) * 10 <= count_flops(reference, 64)


@pytest.mark.parametrize(
    ("name", "sizes"), [("resnet8", (64, 32, 16)), ("resnet8_fast", (16, 8, 4))], ids=["resnet8", "resnet8_fast"]
)
def test_features_are_the_stage_outputs(name: str, sizes: tuple[int, ...]) -> None:
    student = create_model(name).eval()
    with torch.no_grad():
        stage_outputs = student.features(torch.randn(2, 3, 64, 64))
    assert [tuple(output.shape) for output in stage_outputs] == [
        (2, channels, size, size) for channels, size in zip((16, 32, 64), sizes, strict=True)
    ]


@pytest.mark.parametrize("name", ["resnet8", "resnet8_fast"])
@pytest.mark.parametrize("size", [32, 57, 224])
def test_forward_gives_one_logit_per_image_at_any_size(name: str, size: int) -> None:
    student = create_model(name).eval()
    with torch.no_grad():
        student_logits = student(torch.randn(3, 3, size, size))
    assert student_logits.shape == (3,)
    assert student_logits.dtype == torch.float32


def test_single_image_batch_keeps_the_batch_dimension() -> None:
    student = create_model("resnet8").eval()
    with torch.no_grad():
        assert student(torch.randn(1, 3, 40, 40)).shape == (1,)


def test_students_train_with_gradients() -> None:
    student = create_model("resnet8_fast").train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(student(torch.randn(4, 3, 32, 32)), torch.ones(4))
    loss.backward()
    assert all(parameter.grad is not None for parameter in student.parameters())


def test_students_reject_imagenet_weights() -> None:
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_model("resnet8", pretrained="imagenet")


def test_space_to_depth_keeps_every_pixel_and_pads_odd_sides() -> None:
    images = torch.randn(2, 3, 10, 9)
    folded = SpaceToDepth(4)(images)
    assert folded.shape == (2, 48, 3, 3)
    unfolded = torch.nn.functional.pixel_shuffle(folded, 4)
    assert torch.equal(unfolded[..., :10, :9], images)  # nothing dropped or moved
    assert not unfolded[..., 10:, :].any() and not unfolded[..., 9:].any()  # the padding is zeros


def test_high_pass_residual_is_zero_on_flat_blocks_and_keeps_the_image() -> None:
    flat = torch.full((1, 3, 8, 8), 0.7)
    out = HighPassResidual()(flat)
    assert out.shape == (1, 6, 8, 8)
    assert torch.equal(out[:, :3], flat)
    assert out[:, 3:].abs().max() < 1e-6
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2  # the finest detail there is
    detail = HighPassResidual()(checker.float().expand(1, 3, 8, 8))[:, 3:]
    assert torch.allclose(detail.abs(), torch.full_like(detail, 0.5))


@pytest.mark.parametrize("name", ["resnet8_s2d", "resnet8_fast_hp"])
def test_resolution_keeping_variants_are_same_size_and_fast(name: str) -> None:
    variant, fast, reference = create_model(name).eval(), create_model("resnet8_fast"), create_model("resnet8")
    assert abs(count_params(variant) - RESNET8_PARAMS) <= 0.05 * RESNET8_PARAMS
    assert count_flops(variant, 224) <= 2 * count_flops(fast, 224)
    assert count_flops(variant, 224) * 5 <= count_flops(reference, 224)
    with torch.no_grad():
        assert [tuple(f.shape[-2:]) for f in variant.features(torch.randn(1, 3, 64, 64))] == [(16, 16), (8, 8), (4, 4)]
        assert variant(torch.randn(2, 3, 57, 61)).shape == (2,)


def test_space_to_depth_refuses_a_second_downsampling() -> None:
    with pytest.raises(ValueError, match="space_to_depth"):
        SmallResNet(stem_stride=2, space_to_depth=True)


@pytest.mark.parametrize("name", ["resnet8_s2d", "resnet8_fast_hp"])
def test_resolution_keeping_variants_export_to_onnx(name: str, tmp_path: Path) -> None:
    model = create_model(name).eval()
    save_model(model, tmp_path / "student.safetensors")
    report = export_onnx(tmp_path / "student.safetensors", tmp_path / "student.onnx")
    assert report["parity"]["passed"] and report["parity"]["max_abs_logit_diff"] <= 1e-4
