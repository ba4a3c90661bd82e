"""Where a student's soft targets come from: a logit cache (no teacher forward) or the teacher run online."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dfkd.config import ConfigError, RunConfig
from dfkd.data.manifest import Manifest
from dfkd.data.transforms import is_random_augment
from dfkd.distill.features import FeatureRecorder
from dfkd.distill.logit_cache import compute_logit_cache, load_logit_cache, make_stamp, teacher_view
from dfkd.models.fast import channels_last_input

logger = logging.getLogger(__name__)


class TeacherGateError(RuntimeError):
    """The teacher is not good enough on the validation split to teach."""


class TeacherSignal:
    """Teacher logits for a batch: looked up in a cache by row index, or computed by the frozen teacher."""

    def __init__(
        self,
        *,
        cache: dict[str, torch.Tensor] | None = None,
        teacher: torch.nn.Module | None = None,
        renormalise: tuple[torch.Tensor, torch.Tensor] | None = None,
        record_features: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.cache, self.teacher, self.renormalise = cache, teacher, renormalise
        self.channels_last = channels_last
        self.online = cache is None
        self.forward_calls = 0
        self.recorder = FeatureRecorder(teacher) if record_features and teacher is not None else None

    @property
    def feature_maps(self) -> dict[tuple[int, int], torch.Tensor]:
        """The teacher's feature maps of its last online forward, by spatial size (with ``record_features``)."""
        if self.recorder is None:
            raise RuntimeError("this teacher signal does not record feature maps")
        return self.recorder.maps

    def logits(self, split: str, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Teacher fake-logits ``[B]`` for ``images`` ``[B, 3, H, W]`` (student-normalised) at rows ``indices``."""
        if self.cache is not None:
            return self.cache[split][indices.cpu()].to(images.device)
        return self.online_logits(images)

    def online_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Run the frozen teacher on student-normalised ``images`` ``[B, 3, H, W]``; fake-logits ``[B]``."""
        if self.teacher is None:
            raise RuntimeError("this teacher signal has no teacher model to run")
        if self.renormalise is not None:
            scale, shift = (t.to(images.device) for t in self.renormalise)
            images = images * scale + shift
        if self.channels_last:
            images = channels_last_input(images)
        self.forward_calls += 1
        if self.recorder is not None:
            self.recorder.reset()
        with torch.no_grad():
            return self.teacher(images).float()


def _renormaliser(student_view: dict, teacher_view_: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Scale and shift turning student-normalised pixels into teacher-normalised ones (None when equal)."""
    s_mean, s_std = np.array(student_view["mean"]), np.array(student_view["std"])
    t_mean, t_std = np.array(teacher_view_["mean"]), np.array(teacher_view_["std"])
    if np.allclose(s_mean, t_mean) and np.allclose(s_std, t_std):
        return None
    scale = torch.tensor(s_std / t_std, dtype=torch.float32).view(1, 3, 1, 1)
    shift = torch.tensor((s_mean - t_mean) / t_std, dtype=torch.float32).view(1, 3, 1, 1)
    return scale, shift


def build_teacher_signal(
    config: RunConfig, manifest: Manifest, student_view: dict, run_dir: Path, device: torch.device
) -> TeacherSignal | None:
    """Choose cache or online teacher for this run (None without distillation) and check the stamp."""
    features = config.distill.feature_loss != "none"
    if config.distill.loss == "none":
        if config.data.unlabeled:
            raise ConfigError("data.unlabeled images are seen only through the teacher: set distill.loss")
        if features:
            raise ConfigError(
                "distill.feature_loss needs a teacher: set distill.loss (with distill.alpha=0 the logits keep the "
                "labels only)"
            )
        return None
    teacher_path, cache_dir = config.teacher.model, config.teacher.cache
    if config.data.unlabeled and teacher_path is None:
        raise ConfigError("data.unlabeled needs teacher.model: the teacher runs online on the unlabelled images")
    if teacher_path is None and cache_dir is None:
        raise ConfigError("distill.loss is set but neither teacher.model nor teacher.cache is given")
    if is_random_augment(config.data.augment) or config.data.mixup > 0 or config.teacher.online or features:
        if teacher_path is None:
            raise ConfigError(
                "the teacher runs online (teacher.online, data.mixup, distill.feature_loss, or a random data.augment "
                "whose views a cache cannot hold): set teacher.model"
            )
        if config.teacher.online:
            logger.info("teacher.online: running the teacher on every batch")
        elif features:
            logger.info("distill.feature_loss: running the teacher online for its feature maps")
        elif cache_dir is not None:
            logger.warning("random augmentation: the logit cache does not apply; running the teacher online")
        else:
            logger.info("random augmentation: running the teacher online on the same augmented view")
        teacher = _online_teacher(
            teacher_path, student_view, device, channels_last=config.train.channels_last, fold_batchnorm=not features
        )
        return TeacherSignal(**teacher, record_features=features)
    if teacher_path is not None:
        from dfkd.models import read_model_metadata

        view = teacher_view(
            read_model_metadata(teacher_path)["preprocessing"],
            resize_size=config.data.resize_size,
            input_size=config.data.input_size,
        )
        expected = make_stamp(manifest, teacher_path, view)
        if cache_dir is None:
            cache_dir = str(run_dir / "teacher_logits")
            logger.info("no teacher.cache given: caching teacher logits once in %s", cache_dir)
        if not (Path(cache_dir) / "train.safetensors").exists() or not (Path(cache_dir) / "val.safetensors").exists():
            compute_logit_cache(
                teacher_path,
                manifest.path,
                cache_dir,
                resize_size=config.data.resize_size,
                input_size=config.data.input_size,
                num_workers=config.data.num_workers,
                device=device,
                splits=("train", "val"),
            )
        online = (
            _online_teacher(teacher_path, student_view, device, channels_last=config.train.channels_last)
            if config.data.unlabeled
            else {}
        )
        return TeacherSignal(cache=load_logit_cache(cache_dir, manifest, expected=expected), **online)
    return TeacherSignal(cache=load_logit_cache(cache_dir, manifest))


def _online_teacher(
    teacher_path: str,
    student_view: dict,
    device: torch.device,
    *,
    channels_last: bool,
    fold_batchnorm: bool = True,
) -> dict:
    """The frozen teacher (BatchNorm folded unless its feature maps are recorded by hooks; channels-last with
    ``channels_last``) and the re-normalisation from the student's pixels to its own."""
    from dfkd.models import load_model
    from dfkd.models.fast import frozen_inference_model

    teacher, metadata = load_model(teacher_path, device=device)
    teacher = frozen_inference_model(teacher, fold_batchnorm=fold_batchnorm, channels_last=channels_last)
    view = teacher_view(metadata["preprocessing"])
    return {
        "teacher": teacher,
        "renormalise": _renormaliser(student_view, view),
        "channels_last": channels_last,
    }


def teacher_gate(teacher_logits: torch.Tensor, labels: torch.Tensor, *, min_auc: float, skip: bool) -> float:
    """Validation AUC of the teacher; raises :class:`TeacherGateError` below ``min_auc`` unless ``skip``."""
    labels_np = labels.cpu().numpy()
    if len(np.unique(labels_np)) < 2:
        logger.warning("teacher gate: the validation split has one class only; AUC undefined, gate skipped")
        return float("nan")
    auc = float(roc_auc_score(labels_np, teacher_logits.float().cpu().numpy()))
    if auc < min_auc:
        message = (
            f"teacher validation AUC {auc:.3f} is below teacher.min_auc={min_auc}: it would teach noise "
            "(a wrong or partly loaded teacher?). Set teacher.skip_gate=true to distil anyway."
        )
        if not skip:
            raise TeacherGateError(message)
        logger.warning(message)
    else:
        logger.info("teacher gate passed: validation AUC %.4f ≥ %.2f", auc, min_auc)
    return auc
