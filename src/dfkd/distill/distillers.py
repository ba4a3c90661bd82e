"""One small distiller per method: the training loss of a batch from the student's logits.

:func:`build_distiller` turns a config into the distiller of its method, for the trainer and the sweep, by the one
rule of where soft targets come from (:func:`dfkd.distill.source.teacher_source`: none, a logit cache, or the teacher
run online):

- :class:`LabelsOnly`: BCE against the labels, no teacher.
- :class:`CachedLogits`: α · soft + (1 − α) · BCE against logits cached once per image (no teacher forward).
- :class:`OnlineTeacher`: the same against the frozen teacher run on the very images the student sees (random crops,
  mixup: consistent views), and on unlabelled images the soft term alone.
- :class:`AttentionTransfer`: the online teacher plus ``feature_weight`` × attention transfer between feature maps.

A distiller never runs the student: the loop does (autocast, memory format, DDP) and hands the logits over, so the
method-specific part of a training step is one call.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from dfkd.config import ConfigError, DistillConfig, RunConfig
from dfkd.data.manifest import Manifest
from dfkd.distill.features import FeatureRecorder, attention_transfer_loss
from dfkd.distill.frozen_teacher import FrozenTeacher, load_frozen_teacher
from dfkd.distill.logit_cache import compute_logit_cache, load_logit_cache, make_stamp, teacher_view
from dfkd.distill.losses import distillation_loss, hard_loss, soft_loss
from dfkd.distill.source import TeacherGateError, online_reason, teacher_gate, teacher_source

logger = logging.getLogger(__name__)


class Distiller:
    """The training objective of a method. The base has no teacher: subclasses say where soft targets come from."""

    teacher: FrozenTeacher | None = None

    @property
    def teacher_forward_calls(self) -> int:
        """How many batches the teacher ran on (0 without an online teacher)."""
        return self.teacher.forward_calls if self.teacher is not None else 0

    def attach(self, student: nn.Module) -> None:
        """Hook into the student before training (its feature maps); most methods need nothing."""

    def loss(
        self, student_logits: torch.Tensor, labels: torch.Tensor, *, images: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor:
        """The training loss of a labelled batch: student fake-logits ``[B]`` (float), labels ``[B]`` (soft with
        mixup), the ``images`` ``[B, 3, H, W]`` the student saw, their manifest ``indices`` ``[B]``; a scalar."""
        raise NotImplementedError

    def val_loss(
        self, student_logits: torch.Tensor, labels: torch.Tensor, *, images: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor:
        """The validation objective of a batch (the logit part of the training loss); a scalar."""
        raise NotImplementedError

    def unlabeled_loss(self, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The loss on unlabelled ``images`` the student saw (only a teacher can label them); a scalar."""
        raise ConfigError("data.unlabeled images are seen only through the teacher: set distill.loss")

    def teacher_val_logits(self, val_set: Dataset) -> torch.Tensor | None:
        """The teacher's fake-logits ``[N]`` on the validation split (for the gate); None without a teacher."""
        return None


class LabelsOnly(Distiller):
    """No distillation: binary cross-entropy against the (possibly mixed) labels."""

    def loss(self, student_logits, labels, *, images, indices) -> torch.Tensor:
        return hard_loss(student_logits, labels)

    val_loss = loss


class _SoftTargets(Distiller):
    """α · soft + (1 − α) · BCE against teacher logits; the soft term alone on unlabelled images (online teacher)."""

    def __init__(self, settings: DistillConfig, teacher: FrozenTeacher | None = None) -> None:
        self.settings, self.teacher = settings, teacher

    def _kd_loss(self, student_logits, teacher_logits, labels) -> torch.Tensor:
        settings = self.settings
        return distillation_loss(
            student_logits,
            teacher_logits,
            labels,
            kind=settings.loss,
            temperature=settings.temperature,
            alpha=settings.alpha,
            scale_by_t2=settings.scale_by_t2,
        )

    def unlabeled_loss(self, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            raise ConfigError("data.unlabeled needs teacher.model: the teacher runs online on the unlabelled images")
        settings = self.settings
        soft = soft_loss(
            student_logits,
            self.teacher(images),
            kind=settings.loss,
            temperature=settings.temperature,
            scale_by_t2=settings.scale_by_t2,
        )
        return settings.alpha * soft


class CachedLogits(_SoftTargets):
    """Soft targets looked up by manifest row in a logit cache (``{split: [N]}``); no teacher forward.

    A ``teacher`` is given only to score unlabelled images, which no cache holds.
    """

    def __init__(
        self,
        settings: DistillConfig,
        cache: dict[str, torch.Tensor],
        *,
        cache_dir: Path | None = None,
        teacher: FrozenTeacher | None = None,
    ) -> None:
        super().__init__(settings, teacher)
        self.cache, self.cache_dir = cache, cache_dir
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}

    def _cached(self, split: str, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        # The split's logits are copied to the batch's device once, then gathered there by the batch's row indices:
        # no host round trip (on a GPU a blocking copy per batch) and no per-batch allocation of a CPU tensor.
        key = (split, device)
        logits = self._on_device.get(key)
        if logits is None:
            logits = self._on_device[key] = self.cache[split].to(device, torch.float32).contiguous()
        return logits.index_select(0, indices.to(device, non_blocking=True))

    def loss(self, student_logits, labels, *, images, indices) -> torch.Tensor:
        return self._kd_loss(student_logits, self._cached("train", indices, student_logits.device), labels)

    def val_loss(self, student_logits, labels, *, images, indices) -> torch.Tensor:
        return self._kd_loss(student_logits, self._cached("val", indices, student_logits.device), labels)

    def teacher_val_logits(self, val_set: Dataset) -> torch.Tensor:
        return self.cache["val"]


class OnlineTeacher(_SoftTargets):
    """Soft targets from the frozen teacher run on the student's own (augmented, mixed) images."""

    teacher: FrozenTeacher

    def loss(self, student_logits, labels, *, images, indices) -> torch.Tensor:
        return self._kd_loss(student_logits, self.teacher(images), labels)

    val_loss = loss

    def teacher_val_logits(self, val_set: Dataset) -> torch.Tensor:
        from dfkd.data.dataset import build_loader

        device = self.teacher.device
        return torch.cat(
            [self.teacher(images.to(device)).cpu() for images, _, _ in build_loader(val_set, batch_size=64)]
        )


class AttentionTransfer(OnlineTeacher):
    """The online teacher's soft targets plus ``feature_weight`` × attention transfer between the feature maps of
    equal size (:mod:`dfkd.distill.features`), on labelled and unlabelled batches alike."""

    def __init__(self, settings: DistillConfig, teacher: FrozenTeacher) -> None:
        super().__init__(settings, teacher)
        self.student_features: FeatureRecorder | None = None

    def attach(self, student: nn.Module) -> None:
        self.student_features = FeatureRecorder(student)

    def _feature_loss(self) -> torch.Tensor:
        if self.student_features is None:
            raise RuntimeError("attention transfer: attach(student) before training")
        return self.settings.feature_weight * attention_transfer_loss(
            self.student_features.maps, self.teacher.feature_maps
        )

    def loss(self, student_logits, labels, *, images, indices) -> torch.Tensor:
        return super().loss(student_logits, labels, images=images, indices=indices) + self._feature_loss()

    def val_loss(self, student_logits, labels, *, images, indices) -> torch.Tensor:
        return super().loss(student_logits, labels, images=images, indices=indices)

    def unlabeled_loss(self, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return super().unlabeled_loss(student_logits, images) + self._feature_loss()


def build_distiller(
    config: RunConfig,
    manifest: Manifest,
    student_view: dict,
    run_dir: str | os.PathLike[str],
    device: torch.device | str,
) -> Distiller:
    """The distiller of the configured method: the cache checked (computed into ``run_dir/teacher_logits`` when
    only ``teacher.model`` is given) or the teacher loaded onto ``device`` for a student seeing ``student_view``."""
    source = teacher_source(config)
    if source == "none":
        return LabelsOnly()
    if source == "online":
        reason = online_reason(config)
        if config.teacher.cache is not None and not config.teacher.online:
            logger.warning("%s; the logit cache does not apply", reason)
        else:
            logger.info("%s", reason)
        features = config.distill.feature_loss != "none"
        teacher = _load_teacher(config, student_view, device, record_features=features)
        _check_teacher_takes_patches(config, teacher)
        return AttentionTransfer(config.distill, teacher) if features else OnlineTeacher(config.distill, teacher)
    cache_dir, cache = _cached_logits(config, manifest, Path(run_dir), device)
    teacher = _load_teacher(config, student_view, device) if config.data.unlabeled else None
    return CachedLogits(config.distill, cache, cache_dir=cache_dir, teacher=teacher)


def _load_teacher(
    config: RunConfig, student_view: dict, device: torch.device | str, *, record_features: bool = False
) -> FrozenTeacher:
    assert config.teacher.model is not None
    return load_frozen_teacher(
        config.teacher.model,
        student_view,
        device,
        channels_last=config.train.channels_last,
        record_features=record_features,
    )


def _check_teacher_takes_patches(config: RunConfig, teacher: FrozenTeacher) -> None:
    """Refuse a ``data.train_patch`` the online teacher cannot take (a fixed-size network such as a ViT), before the
    first batch fails inside the teacher with a message that names neither the setting nor the file."""
    from dfkd.models import input_size_error

    patch = config.data.train_patch
    # through the model itself: FrozenTeacher's call would count the probe as a teaching forward
    if patch is not None and (error := input_size_error(teacher.model, patch)) is not None:
        raise ConfigError(
            f"data.train_patch={patch}: the online teacher {config.teacher.model} cannot take {patch}-px inputs "
            f"({error}); distil on whole views, or from a teacher that pools globally"
        )


def _cached_logits(
    config: RunConfig, manifest: Manifest, run_dir: Path, device: torch.device | str
) -> tuple[Path, dict[str, torch.Tensor]]:
    """The cache folder and its train / val logits, computed once when missing and checked against the stamp."""
    teacher_path = config.teacher.model
    if teacher_path is None:  # a cache alone: the manifest and the view can be checked, not the teacher
        cache_dir = Path(config.teacher.cache or "")
        geometry = (config.data.resize_size, config.data.input_size, config.data.scaled_decode)
        return cache_dir, load_logit_cache(cache_dir, manifest, geometry=geometry)
    from dfkd.models import read_model_card

    view = teacher_view(
        read_model_card(teacher_path).preprocessing.as_dict(),
        resize_size=config.data.resize_size,
        input_size=config.data.input_size,
    )
    cache_dir = Path(config.teacher.cache) if config.teacher.cache is not None else run_dir / "teacher_logits"
    if config.teacher.cache is None:
        logger.info("no teacher.cache given: caching teacher logits once in %s", cache_dir)
    if not (cache_dir / "train.safetensors").exists() or not (cache_dir / "val.safetensors").exists():
        compute_logit_cache(
            teacher_path,
            manifest.path,
            cache_dir,
            resize_size=config.data.resize_size,
            input_size=config.data.input_size,
            num_workers=config.data.num_workers,
            device=device,
            splits=("train", "val"),
            scaled_decode=config.data.scaled_decode,
        )
    expected = make_stamp(manifest, teacher_path, view, scaled_decode=config.data.scaled_decode)
    return cache_dir, load_logit_cache(cache_dir, manifest, expected=expected)


__all__ = [
    "AttentionTransfer",
    "CachedLogits",
    "Distiller",
    "LabelsOnly",
    "OnlineTeacher",
    "TeacherGateError",
    "build_distiller",
    "teacher_gate",
    "teacher_source",
]
