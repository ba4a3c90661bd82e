"""Feature-level distillation: attention transfer (Zagoruyko & Komodakis, 2017) between any teacher and student.

An attention map is the channel mean of the squared activations of a feature map, flattened and L2-normalised, so
it carries *where* a network looks, not how many channels it has: a 1,280-channel teacher map and a 64-channel
student map compare directly. Maps are paired by spatial size. :class:`FeatureRecorder` finds them without knowing
the architecture: forward hooks keep, for each spatial size, the last 4-D output a module produced (for a ResNet or
MobileNet that is the output of the last block at that resolution), so a timm or torchvision teacher and a ResNet8
student need no per-model layer names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureRecorder:
    """Records, during each forward pass of ``model``, the last 4-D module output at each spatial size (> 1×1).

    Use as ``recorder.reset(); model(x); maps = recorder.maps`` ({(h, w): tensor}). ``remove()`` detaches the hooks.
    """

    def __init__(self, model: nn.Module) -> None:
        self.maps: dict[tuple[int, int], torch.Tensor] = {}
        self._handles = [module.register_forward_hook(self._hook) for module in model.modules() if module is not model]

    def _hook(self, module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
            self.maps[(int(output.shape[-2]), int(output.shape[-1]))] = output

    def reset(self) -> None:
        """Forget the maps of the previous forward pass."""
        self.maps = {}

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, H·W]``: channel mean of the squared activations, L2-normalised per image."""
    return F.normalize(features.float().pow(2).mean(1).flatten(1), dim=1)


def attention_transfer_loss(
    student_maps: dict[tuple[int, int], torch.Tensor], teacher_maps: dict[tuple[int, int], torch.Tensor]
) -> torch.Tensor:
    """Sum over the spatial sizes both networks produce of the mean squared difference of their attention maps.

    Raises ``ValueError`` when no size is shared (the student and teacher see images of different sizes, or one has
    no spatial feature maps): attention transfer would silently do nothing.
    """
    shared = sorted(set(student_maps) & set(teacher_maps))
    if not shared:
        raise ValueError(
            f"attention transfer: the student's feature-map sizes {sorted(student_maps)} and the teacher's "
            f"{sorted(teacher_maps)} share none; give both the same input size"
        )
    losses = [
        (attention_map(student_maps[size]) - attention_map(teacher_maps[size].detach())).pow(2).mean()
        for size in shared
    ]
    return torch.stack(losses).sum()
