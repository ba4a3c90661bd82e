"""Parameter and FLOP counting."""

from __future__ import annotations

import torch

from dfkd.models import count_flops, count_params, create_model


def test_count_params_counts_frozen_parameters_too() -> None:
    layer = torch.nn.Linear(10, 3)
    layer.bias.requires_grad_(False)
    assert count_params(layer) == 33


def test_count_flops_is_two_per_multiply_accumulate() -> None:
    assert count_flops(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5)), 4) == 2 * 48 * 5


def test_count_flops_is_per_image_and_restores_the_mode() -> None:
    student = create_model("resnet8_fast").train()
    one = count_flops(student, 64)
    assert count_flops(student, 64, batch_size=4) == one
    assert count_flops(student, (64, 64)) == one
    assert 1.9 * one < count_flops(student, (64, 128)) < 2.1 * one
    assert student.training
