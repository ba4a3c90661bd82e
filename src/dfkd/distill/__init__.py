"""Distillation: pure loss functions, the teacher-logit cache, and one distiller per method."""

from dfkd.distill.losses import distillation_loss, hard_loss, soft_loss

__all__ = ["distillation_loss", "hard_loss", "soft_loss"]
