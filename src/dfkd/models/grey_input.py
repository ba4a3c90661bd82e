"""A colour-blind input for any model: the normalised RGB image replaced by its luminance in all three channels.

For images without colour (infrared or grey CCTV, scanned prints), and to test whether colour is a cue: the eleventh
round's probes found that grey test images take away almost every false alarm of colour-trained detectors on a genuine
collection they never saw. Trained colour-blind, the same recipe did worse there at two seeds (43.8 % and 51.6 % of
those photos called fake, against 24.8 % and 35.2 %; docs/results/generalisation.md, twelfth round), so it is off by
default. The conversion is the model's first layer, not a preprocessing step, so training, evaluation, detection and
every exported file apply it alike.
"""

from __future__ import annotations

import torch
from torch import nn

# ITU-R BT.601 luma weights (Pillow's "L" mode). They weigh the *normalised* channels: with ImageNet's near-equal
# stds that is the luminance of the raw pixels with weights within 0.005 of these, on a normalised channel's scale,
# and any fixed weighting removes colour all the same, so the model needs no mean or std of its own.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class GreyInput(nn.Module):
    """``[B, 3, H, W]`` → ``[B, 3, H, W]``: each pixel's weighted channel sum, repeated in the three channels.

    Three channels out, so ImageNet-pretrained stems keep their shape. No parameters and no saved state: a model
    file's tensors are the same with or without it, and ``grey`` in the card's architecture rebuilds it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The luminance of ``x`` in each of its three channels."""
        return (x * self.weights.to(x.dtype)).sum(dim=1, keepdim=True).repeat(1, 3, 1, 1)
