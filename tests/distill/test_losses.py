"""Distillation losses against hand computation and the reference formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dfkd.distill import distillation_loss, hard_loss, soft_loss


def _reference_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reference repository's Bernoulli KL, written out as it did."""
    t = torch.sigmoid(teacher / temperature).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid(student / temperature).clamp(1e-6, 1 - 1e-6)
    return (t * torch.log(t / s) + (1 - t) * torch.log((1 - t) / (1 - s))).mean()


def test_kl_matches_a_hand_computed_value() -> None:
    student, teacher = torch.tensor([2.0]), torch.tensor([-1.0])
    t, s = 1 / (1 + math.exp(1.0 / 4)), 1 / (1 + math.exp(-2.0 / 4))
    expected = t * math.log(t / s) + (1 - t) * math.log((1 - t) / (1 - s))
    assert soft_loss(student, teacher, kind="kl", temperature=4.0).item() == pytest.approx(expected, abs=1e-6)


def test_mse_matches_a_hand_computed_value() -> None:
    student, teacher = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 1.0])
    expected = ((4.0 / 4) ** 2 + (1.0 / 4) ** 2) / 2
    assert soft_loss(student, teacher, kind="mse", temperature=4.0).item() == pytest.approx(expected, abs=1e-7)


def test_losses_equal_reference_formulas_and_t2_scales() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(64) * 5, torch.randn(64) * 5
    for temperature in (1.0, 2.0, 4.0):
        kl = soft_loss(student, teacher, kind="kl", temperature=temperature)
        assert torch.allclose(kl, _reference_kl(student, teacher, temperature), atol=1e-6)
        mse = soft_loss(student, teacher, kind="mse", temperature=temperature)
        assert torch.allclose(mse, torch.mean((student / temperature - teacher / temperature) ** 2), atol=1e-6)
        for kind, plain in (("kl", kl), ("mse", mse)):
            scaled = soft_loss(student, teacher, kind=kind, temperature=temperature, scale_by_t2=True)
            assert torch.allclose(scaled, plain * temperature**2, atol=1e-5)


def test_kl_equals_two_class_softmax_kd_on_zero_and_logit() -> None:
    torch.manual_seed(1)
    student, teacher = torch.randn(32) * 3, torch.randn(32) * 3
    temperature = 4.0
    zeros = torch.zeros_like(student)
    s2 = torch.stack([zeros, student], dim=1) / temperature
    t2 = torch.stack([zeros, teacher], dim=1) / temperature
    hinton = F.kl_div(F.log_softmax(s2, dim=1), F.softmax(t2, dim=1), reduction="batchmean")
    ours = soft_loss(student, teacher, kind="kl", temperature=temperature)
    assert torch.allclose(ours, hinton, atol=1e-6)
    # The reference's warning: softmax over ONE logit is always 1, so that KD silently gives zero.
    one_logit = F.kl_div(F.log_softmax(student[:, None], 1), F.softmax(teacher[:, None], 1), reduction="batchmean")
    assert one_logit.item() == 0.0 and ours.item() > 0


def test_distillation_loss_mixes_soft_and_bce() -> None:
    torch.manual_seed(2)
    student, teacher = torch.randn(16), torch.randn(16)
    labels = (torch.rand(16) > 0.5).float()
    for kind in ("kl", "mse"):
        for alpha in (0.0, 0.4, 1.0):
            total = distillation_loss(student, teacher, labels, kind=kind, temperature=4.0, alpha=alpha)
            soft = soft_loss(student, teacher, kind=kind, temperature=4.0)
            bce = F.binary_cross_entropy_with_logits(student, labels)
            assert torch.allclose(total, alpha * soft + (1 - alpha) * bce, atol=1e-6)
    assert torch.allclose(hard_loss(student, labels), F.binary_cross_entropy_with_logits(student, labels))


def test_soft_loss_has_no_gradient_into_the_teacher_and_rejects_bad_args() -> None:
    student = torch.randn(4, requires_grad=True)
    teacher = torch.randn(4, requires_grad=True)
    soft_loss(student, teacher, kind="kl", temperature=2.0).backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError, match="unknown soft loss"):
        soft_loss(student, teacher, kind="l1", temperature=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        soft_loss(student, teacher, kind="kl", temperature=0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        soft_loss(student, teacher[:2], kind="kl", temperature=1.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, teacher, torch.ones(4), kind="kl", temperature=1.0, alpha=1.5)
