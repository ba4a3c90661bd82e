"""The frozen teacher run online on the student's batches: in its own normalisation, counted, optionally hooked."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from dfkd.distill.features import FeatureRecorder
from dfkd.distill.logit_cache import teacher_view
from dfkd.models.ensemble import ENSEMBLE_NAME
from dfkd.models.fast import channels_last_input


class FrozenTeacher:
    """Fake-logits ``[B]`` of a frozen teacher for student-normalised images ``[B, 3, H, W]``.

    The student's normalisation is turned into the teacher's (``renormalise`` = scale, shift) before each forward;
    ``forward_calls`` counts the forwards. With ``record_features`` the teacher's feature maps of its last forward are
    kept in :attr:`feature_maps` (for attention transfer).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        renormalise: tuple[torch.Tensor, torch.Tensor] | None = None,
        channels_last: bool = False,
        record_features: bool = False,
    ) -> None:
        self.model, self.renormalise, self.channels_last = model, renormalise, channels_last
        self.forward_calls = 0
        self.recorder = FeatureRecorder(model) if record_features else None

    @property
    def device(self) -> torch.device:
        """Where the teacher's weights are."""
        return next(self.model.parameters()).device

    @property
    def feature_maps(self) -> dict[tuple[int, int], torch.Tensor]:
        """The teacher's feature maps of its last forward, by spatial size (with ``record_features``)."""
        if self.recorder is None:
            raise RuntimeError("this teacher does not record feature maps")
        return self.recorder.maps

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.renormalise is not None:
            scale, shift = (t.to(images.device) for t in self.renormalise)
            images = images * scale + shift
        if self.channels_last:
            images = channels_last_input(images)
        self.forward_calls += 1
        if self.recorder is not None:
            self.recorder.reset()
        return self.model(images).float()


def renormaliser(student_view: dict, teacher_view_: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Scale and shift ``[1, 3, 1, 1]`` turning student-normalised pixels into teacher-normalised ones (None: equal)."""
    s_mean, s_std = np.array(student_view["mean"]), np.array(student_view["std"])
    t_mean, t_std = np.array(teacher_view_["mean"]), np.array(teacher_view_["std"])
    if np.allclose(s_mean, t_mean) and np.allclose(s_std, t_std):
        return None
    scale = torch.tensor(s_std / t_std, dtype=torch.float32).view(1, 3, 1, 1)
    shift = torch.tensor((s_mean - t_mean) / t_std, dtype=torch.float32).view(1, 3, 1, 1)
    return scale, shift


def load_frozen_teacher(
    path: str | os.PathLike[str],
    student_view: dict,
    device: torch.device | str,
    *,
    channels_last: bool,
    record_features: bool = False,
) -> FrozenTeacher:
    """The teacher file as a :class:`FrozenTeacher` for a student seeing ``student_view`` (mean, std).

    BatchNorm is folded into the convolutions unless feature maps are recorded (the folded, traced module no longer
    fires hooks on its blocks).
    """
    from dfkd.models import load_model
    from dfkd.models.fast import frozen_inference_model

    model, card = load_model(path, device=device)
    if record_features and card.architecture.name == ENSEMBLE_NAME:
        raise ValueError(
            f"{path}: an ensemble teacher has one set of feature maps per member, so attention transfer has no "
            "single map to match; distil from its logits (distill.feature_loss=none) or from one member"
        )
    model = frozen_inference_model(model, fold_batchnorm=not record_features, channels_last=channels_last)
    return FrozenTeacher(
        model,
        renormalise=renormaliser(student_view, teacher_view(card.preprocessing.as_dict())),
        channels_last=channels_last,
        record_features=record_features,
    )
