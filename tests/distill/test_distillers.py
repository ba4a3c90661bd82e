"""One distiller per method: each loss against the pure loss functions, and the one rule that picks the method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfkd.config import ConfigError, DistillConfig, load_config
from dfkd.data import read_manifest
from dfkd.distill import distillation_loss, hard_loss, soft_loss
from dfkd.distill.distillers import (
    AttentionTransfer,
    CachedLogits,
    LabelsOnly,
    OnlineTeacher,
    build_distiller,
    teacher_source,
)
from dfkd.distill.features import FeatureRecorder, attention_transfer_loss
from dfkd.distill.frozen_teacher import FrozenTeacher, renormaliser
from tests.conftest import TINY

KD = DistillConfig(loss="kl", alpha=0.7, temperature=2.0)


class _TinyNet(nn.Module):
    """Two convolutions (8×8 and 4×4 maps) and a fake-logit head: enough for feature maps and logits."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.head = nn.Linear(width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv2(torch.relu(self.conv1(images))))
        return self.head(features.mean((2, 3))).squeeze(1)


def _batch(size: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    images = torch.randn(size, 3, 8, 8)
    labels = torch.tensor([0.0, 1.0] * (size // 2))
    return images, labels, torch.arange(size), torch.randn(size)


def _teacher(**kwargs) -> FrozenTeacher:
    torch.manual_seed(1)
    return FrozenTeacher(_TinyNet(8).eval().requires_grad_(False), **kwargs)


def test_labels_only_is_bce_and_has_no_teacher() -> None:
    images, labels, indices, student_logits = _batch()
    distiller = LabelsOnly()
    loss = distiller.loss(student_logits, labels, images=images, indices=indices)
    assert torch.equal(loss, hard_loss(student_logits, labels))
    assert torch.equal(distiller.val_loss(student_logits, labels, images=images, indices=indices), loss)
    assert distiller.teacher_val_logits(None) is None and distiller.teacher_forward_calls == 0
    with pytest.raises(ConfigError, match="only through the teacher"):
        distiller.unlabeled_loss(student_logits, images)


def test_cached_logits_look_up_each_split_by_row_and_run_no_teacher() -> None:
    images, labels, indices, student_logits = _batch()
    cache = {"train": torch.randn(20), "val": torch.randn(10)}
    distiller = CachedLogits(KD, cache)
    rows = torch.tensor([3, 17, 0, 5, 9, 11])
    kwargs = {"kind": "kl", "temperature": 2.0, "alpha": 0.7}
    loss = distiller.loss(student_logits, labels, images=images, indices=rows)
    assert torch.allclose(loss, distillation_loss(student_logits, cache["train"][rows], labels, **kwargs))
    val = distiller.val_loss(student_logits, labels, images=images, indices=indices)
    assert torch.allclose(val, distillation_loss(student_logits, cache["val"][indices], labels, **kwargs))
    assert distiller.teacher_val_logits(None) is cache["val"] and distiller.teacher_forward_calls == 0


def test_online_teacher_scores_the_students_own_images_in_its_normalisation() -> None:
    images, labels, indices, student_logits = _batch()
    student_view = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    teacher_view = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    teacher = _teacher(renormalise=renormaliser(student_view, teacher_view))
    distiller = OnlineTeacher(KD, teacher)
    loss = distiller.loss(student_logits, labels, images=images, indices=indices)
    # Student-normalised pixels back to [0, 1], then into the teacher's normalisation.
    pixels = images * 0.5 + 0.5
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (teacher_view["mean"], teacher_view["std"]))
    teacher_logits = teacher.model((pixels - mean) / std)
    expected = distillation_loss(student_logits, teacher_logits, labels, kind="kl", temperature=2.0, alpha=0.7)
    assert torch.allclose(loss, expected, atol=1e-5)
    unlabeled = distiller.unlabeled_loss(student_logits, images)
    assert torch.allclose(unlabeled, 0.7 * soft_loss(student_logits, teacher_logits, kind="kl", temperature=2.0))
    assert teacher.forward_calls == 2
    assert renormaliser(student_view, student_view) is None


def test_attention_transfer_adds_the_weighted_feature_term_in_training_only() -> None:
    images, labels, indices, _ = _batch()
    teacher = _teacher(record_features=True)
    student = _TinyNet(4)
    distiller = AttentionTransfer(DistillConfig(loss="mse", feature_loss="attention", feature_weight=10.0), teacher)
    distiller.attach(student)
    reference = FeatureRecorder(student)
    student_logits = student(images)
    loss = distiller.loss(student_logits, labels, images=images, indices=indices)
    teacher_logits = teacher.model(images)
    kd = distillation_loss(student_logits, teacher_logits, labels, kind="mse", temperature=4.0, alpha=0.5)
    feature = attention_transfer_loss(reference.maps, teacher.feature_maps)
    assert feature.item() > 0
    assert torch.allclose(loss, kd + 10.0 * feature, atol=1e-6)
    loss.backward()
    assert student.conv1.weight.grad is not None  # the feature term reaches the student's early layers
    val = distiller.val_loss(student_logits.detach(), labels, images=images, indices=indices)
    assert torch.allclose(val, kd, atol=1e-6)
    with pytest.raises(RuntimeError, match="attach"):
        AttentionTransfer(KD, teacher).loss(student_logits, labels, images=images, indices=indices)


@pytest.mark.parametrize(
    ("extra", "source"),
    [
        ((), "none"),
        (("distill.loss=kl", "teacher.cache=c"), "cache"),
        (("distill.loss=kl", "teacher.model=t"), "cache"),
        (("distill.loss=kl", "teacher.model=t", "teacher.online=true"), "online"),
        (("distill.loss=kl", "teacher.model=t", "data.mixup=0.4"), "online"),
        (("distill.loss=kl", "teacher.model=t", "data.augment=crop"), "online"),
        (("distill.loss=kl", "teacher.model=t", "distill.feature_loss=attention"), "online"),
        (("distill.loss=kl", "teacher.model=t", "teacher.cache=c", "data.mixup=0.4"), "online"),
    ],
)
def test_the_rule_picks_where_soft_targets_come_from(extra: tuple[str, ...], source: str) -> None:
    assert teacher_source(load_config(None, list(extra))) == source


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("data.unlabeled=[u]",), "only through the teacher"),
        (("distill.feature_loss=attention",), "feature_loss needs a teacher"),
        (("distill.loss=kl",), "neither teacher.model nor teacher.cache"),
        (("distill.loss=kl", "teacher.cache=c", "data.unlabeled=[u]"), "data.unlabeled needs teacher.model"),
        (("distill.loss=kl", "teacher.cache=c", "data.mixup=0.4"), "data.mixup"),
        (("distill.loss=kl", "teacher.cache=c", "distill.feature_loss=attention"), "distill.feature_loss"),
    ],
)
def test_the_rule_refuses_a_method_without_the_teacher_it_needs(extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        teacher_source(load_config(None, list(extra)))


def test_build_distiller_makes_each_method_from_the_config(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(easy_manifest)
    view = {"resize_size": 40, "input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}

    def build(*extra: str):
        config = load_config(None, [*TINY, f"data.manifest={easy_manifest}", *extra])
        return build_distiller(config, manifest, view, tmp_path / "run", "cpu")

    assert isinstance(build(), LabelsOnly)
    cached = build("distill.loss=kl", f"teacher.model={easy_teacher}")
    assert isinstance(cached, CachedLogits) and cached.teacher is None
    assert cached.cache_dir == tmp_path / "run" / "teacher_logits"  # computed once for the run
    assert cached.cache["train"].shape == (len(manifest.split("train")),)
    online = build("distill.loss=kl", f"teacher.model={easy_teacher}", "data.mixup=0.4")
    assert type(online) is OnlineTeacher and online.teacher.recorder is None
    attention = build("distill.loss=kl", f"teacher.model={easy_teacher}", "distill.feature_loss=attention")
    assert isinstance(attention, AttentionTransfer) and attention.teacher.recorder is not None
    # The teacher's validation logits for the gate: the online teacher reproduces the cached ones.
    from dfkd.data.dataset import ManifestDataset
    from dfkd.data.transforms import build_eval_transform

    val_set = ManifestDataset(manifest, "val", build_eval_transform(**view))
    assert torch.allclose(online.teacher_val_logits(val_set), cached.teacher_val_logits(val_set), atol=1e-4)
