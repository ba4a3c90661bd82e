"""Distillation losses as pure functions of logits (one fake-logit per image).

``soft_loss(kind="kl")`` is the Bernoulli KL between σ(t/T) and σ(s/T): since σ(z) = softmax([0, z]), it is exactly
two-class Hinton KD. ``kind="mse"`` is the mean squared difference of the scaled logits. The reference multiplied
neither by T²; ``scale_by_t2=True`` gives Hinton's convention, which keeps the soft gradients' size independent of T.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

SoftKind = Literal["kl", "mse"]
PROB_EPS = 1e-6


def soft_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    kind: SoftKind,
    temperature: float,
    scale_by_t2: bool = False,
) -> torch.Tensor:
    """Soft-target loss between student and teacher fake-logits ``[B]``; a scalar."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"logit shapes differ: student {tuple(student_logits.shape)}, teacher {tuple(teacher_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    student_scaled = student_logits.float() / temperature
    teacher_scaled = teacher_logits.detach().float() / temperature
    if kind == "kl":
        teacher_probs = torch.sigmoid(teacher_scaled).clamp(PROB_EPS, 1 - PROB_EPS)
        student_probs = torch.sigmoid(student_scaled).clamp(PROB_EPS, 1 - PROB_EPS)
        loss = teacher_probs * torch.log(teacher_probs / student_probs) + (1 - teacher_probs) * torch.log(
            (1 - teacher_probs) / (1 - student_probs)
        )
        loss = loss.mean()
    elif kind == "mse":
        loss = F.mse_loss(student_scaled, teacher_scaled)
    else:
        raise ValueError(f"unknown soft loss {kind!r}: expected 'kl' or 'mse'")
    return loss * temperature**2 if scale_by_t2 else loss


def hard_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits against 0/1 labels (fake = 1); a scalar."""
    return F.binary_cross_entropy_with_logits(student_logits.float(), labels.float())


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    kind: SoftKind,
    temperature: float,
    alpha: float,
    scale_by_t2: bool = False,
) -> torch.Tensor:
    """α · soft_loss + (1 − α) · BCE; a scalar."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft = soft_loss(student_logits, teacher_logits, kind=kind, temperature=temperature, scale_by_t2=scale_by_t2)
    return alpha * soft + (1.0 - alpha) * hard_loss(student_logits, labels)
