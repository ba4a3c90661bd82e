"""optim.backbone_lr_scale: a teacher's pretrained backbone learning slower than its head, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd.config import ConfigError, load_config
from dfkd.models import create_model
from dfkd.train import train
from dfkd.train.setup import build_optimizer


def one_step(scale: float) -> tuple[torch.nn.Module, dict[str, torch.Tensor], torch.optim.Optimizer]:
    """A fresh MobileNetV2 teacher after one Adam step at lr 0.01 with ``backbone_lr_scale``, and its first weights."""
    torch.manual_seed(0)
    teacher = create_model("mobilenet_v2")
    before = {name: tensor.clone() for name, tensor in teacher.state_dict().items()}
    optimizer = build_optimizer(load_config(None, ["optim.lr=0.01", f"optim.backbone_lr_scale={scale}"]), teacher)
    teacher.train()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.nn.functional.binary_cross_entropy_with_logits(teacher(images), labels).backward()
    optimizer.step()
    return teacher, before, optimizer


def test_scale_zero_leaves_the_backbone_weights_and_trains_the_head() -> None:
    teacher, before, optimizer = one_step(0.0)
    assert [group["lr"] for group in optimizer.param_groups] == [0.01, 0.0]
    after = teacher.state_dict()
    conv = "backbone.features.0.0.weight"
    assert torch.equal(after[conv], before[conv])
    assert not torch.equal(after["head.0.weight"], before["head.0.weight"])
    # BatchNorm statistics are buffers, not learnt: they still follow the data.
    assert not torch.equal(after["backbone.features.0.1.running_mean"], before["backbone.features.0.1.running_mean"])


def test_a_scale_puts_every_parameter_in_one_group_at_its_rate() -> None:
    teacher, before, optimizer = one_step(0.1)
    head, backbone = optimizer.param_groups
    assert head["lr"] == 0.01 and backbone["lr"] == pytest.approx(0.001)
    grouped = [id(parameter) for group in optimizer.param_groups for parameter in group["params"]]
    assert sorted(grouped) == sorted(id(parameter) for parameter in teacher.parameters())
    assert {id(parameter) for parameter in backbone["params"]} == {id(p) for p in teacher.backbone.parameters()}
    moved = teacher.state_dict()["backbone.features.0.0.weight"] - before["backbone.features.0.0.weight"]
    assert 0 < moved.abs().max() <= 0.001 * 1.01  # Adam's first step moves each weight by about its lr
    _, _, plain = one_step(1.0)
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["lr"] == 0.01


def test_a_student_with_a_scale_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    config = load_config(
        None, [f"data.manifest={tmp_path / 'absent.csv'}", "model.name=resnet8_fast", "optim.backbone_lr_scale=0.5"]
    )
    with pytest.raises(ConfigError, match="backbone_lr_scale=0.5: resnet8_fast has no pretrained backbone"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="backbone_lr_scale"):
        load_config(None, ["optim.backbone_lr_scale=2"])
