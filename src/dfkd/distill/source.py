"""Where a run's soft targets come from (none, a logit cache, the teacher online) and whether the teacher may teach.

:func:`teacher_source` is the one rule, used by the trainer (through :func:`dfkd.distill.distillers.build_distiller`)
and by the sweep (which shares one cache between its trials only where the rule picks a cache).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dfkd.config import ConfigError, RunConfig
from dfkd.data.transforms import is_random_augment

logger = logging.getLogger(__name__)

TeacherSource = Literal["none", "cache", "online"]


class TeacherGateError(RuntimeError):
    """The teacher is not good enough on the validation split to teach."""


def online_reason(config: RunConfig) -> str | None:
    """Why the teacher must run online for this config (None: a logit cache can hold its targets)."""
    if config.teacher.online:
        return "teacher.online: running the teacher on every batch"
    if config.distill.feature_loss != "none":
        return "distill.feature_loss: running the teacher online for its feature maps"
    if config.data.mixup > 0:
        return "data.mixup: running the teacher online on each mixed batch"
    if config.data.synthetic_fakes != "none":
        return "data.synthetic_fakes: running the teacher online on the same self-blended views"
    if is_random_augment(config.data.augment):
        return "random augmentation: running the teacher online on the same augmented view"
    return None


def teacher_source(config: RunConfig) -> TeacherSource:
    """Where the soft targets of a run come from: nowhere, a logit cache, or the teacher run online.

    Raises:
        ConfigError: the method needs a teacher file or cache that the config does not give.
    """
    features = config.distill.feature_loss != "none"
    if config.distill.loss == "none":
        if config.data.unlabeled:
            raise ConfigError("data.unlabeled images are seen only through the teacher: set distill.loss")
        if features:
            raise ConfigError(
                "distill.feature_loss needs a teacher: set distill.loss (with distill.alpha=0 the logits keep the "
                "labels only)"
            )
        return "none"
    teacher_path, cache_dir = config.teacher.model, config.teacher.cache
    if config.data.unlabeled and teacher_path is None:
        raise ConfigError("data.unlabeled needs teacher.model: the teacher runs online on the unlabelled images")
    if teacher_path is None and cache_dir is None:
        raise ConfigError("distill.loss is set but neither teacher.model nor teacher.cache is given")
    reason = online_reason(config)
    if reason is None:
        return "cache"
    if teacher_path is None:
        raise ConfigError(
            f"the teacher must run online ({reason.split(':')[0]}: a cache cannot hold its views): set teacher.model"
        )
    return "online"


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
