"""Attention transfer: maps found by forward hooks on any architecture, the loss, and training that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd.config import ConfigError, load_config
from dfkd.distill.features import FeatureRecorder, attention_map, attention_transfer_loss
from dfkd.distill.logit_cache import compute_logit_cache
from dfkd.models import create_model, load_model
from dfkd.train import train
from tests.conftest import TINY


def test_recorder_keeps_the_last_block_output_at_each_resolution() -> None:
    model = create_model("resnet8_fast").eval()
    recorder = FeatureRecorder(model)
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        model(images)
        stages = model.features(images)
    assert sorted(recorder.maps) == [(6, 6), (12, 12), (24, 24), (48, 48)]  # the stem too; no 1x1 pooled map
    for stage in stages:
        assert torch.equal(recorder.maps[tuple(stage.shape[-2:])], stage)
    recorder.remove()
    recorder.reset()
    with torch.no_grad():
        model(images)
    assert recorder.maps == {}


def test_recorder_finds_a_torchvision_teachers_maps_without_layer_names() -> None:
    teacher = create_model("mobilenet_v2").eval()
    recorder = FeatureRecorder(teacher)
    with torch.no_grad():
        teacher(torch.randn(1, 3, 96, 96))
    assert {(24, 24), (12, 12), (6, 6), (3, 3)} <= set(recorder.maps)
    assert recorder.maps[(3, 3)].shape[1] == 1280  # the last MobileNetV2 block before pooling


def test_attention_maps_are_normalised_and_the_loss_compares_where_networks_look() -> None:
    features = torch.randn(4, 16, 6, 6)
    maps = attention_map(features)
    assert maps.shape == (4, 36)
    assert torch.allclose(maps.norm(dim=1), torch.ones(4))
    # Channel count does not matter, only where the energy is: 64 channels with the same spatial energy match.
    wide = features.repeat(1, 4, 1, 1)
    assert attention_transfer_loss({(6, 6): features}, {(6, 6): wide}).item() == pytest.approx(0.0, abs=1e-7)
    shifted = torch.roll(features, shifts=3, dims=-1)
    student = features.clone().requires_grad_(True)
    loss = attention_transfer_loss({(6, 6): student, (3, 3): torch.randn(4, 8, 3, 3)}, {(6, 6): shifted})
    assert loss.item() > 0
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="share none"):
        attention_transfer_loss({(6, 6): features}, {(3, 3): features})


def _attention_distance(student_path: Path, teacher_path: Path) -> float:
    student, _ = load_model(student_path)
    teacher, _ = load_model(teacher_path)
    recorders = FeatureRecorder(student.eval()), FeatureRecorder(teacher.eval())
    torch.manual_seed(0)
    images = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        student(images)
        teacher(images)
    return attention_transfer_loss(recorders[0].maps, recorders[1].maps).item()


def test_training_with_attention_transfer_pulls_the_students_maps_to_the_teachers(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    base = [
        *TINY,
        f"data.manifest={easy_manifest}",
        "train.epochs=2",
        "model.name=resnet8_fast",
        "distill.loss=kl",
        f"teacher.model={easy_teacher}",
        "distill.feature_loss=attention",
    ]
    with_at = train(load_config(None, [*base, "distill.feature_weight=500"]), tmp_path / "at")
    without = train(load_config(None, [*base, "distill.feature_weight=0"]), tmp_path / "none")
    assert with_at.teacher_forward_calls >= 8  # the teacher runs online for its maps, no cache
    assert with_at.best_value > 0.8  # still learns the task
    assert _attention_distance(with_at.model_path, easy_teacher) < 0.8 * _attention_distance(
        without.model_path, easy_teacher
    )


def test_attention_transfer_needs_an_online_teacher(easy_manifest: Path, easy_teacher: Path, tmp_path: Path) -> None:
    base = [*TINY, f"data.manifest={easy_manifest}", "distill.feature_loss=attention"]
    with pytest.raises(ConfigError, match="feature_loss needs a teacher"):
        train(load_config(None, base), tmp_path / "a")
    cache = compute_logit_cache(easy_teacher, easy_manifest, tmp_path / "cache", resize_size=40, input_size=32)
    with pytest.raises(ConfigError, match="distill.feature_loss"):
        train(load_config(None, [*base, "distill.loss=kl", f"teacher.cache={cache}"]), tmp_path / "b")
    with pytest.raises(ConfigError, match="feature_loss"):
        load_config(None, [*base, "distill.feature_loss=fitnet"])
