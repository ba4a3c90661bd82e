"""Distillation: pure loss functions and the teacher-logit cache."""

from dfkd.distill.losses import distillation_loss, hard_loss, soft_loss

__all__ = ["distillation_loss", "hard_loss", "soft_loss"]
