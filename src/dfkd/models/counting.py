"""Parameter and FLOP counts."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(model: nn.Module, input_size: int | tuple[int, int] = 224, batch_size: int = 1) -> int:
    """FLOPs of one forward pass of ONE image, by torch's FlopCounterMode (2 x multiply-accumulates).

    Runs `batch_size` images of [3, H, W] in eval mode without gradients and divides by `batch_size`; the model's
    train/eval mode is restored afterwards.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    images = torch.zeros(batch_size, 3, height, width, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // batch_size
