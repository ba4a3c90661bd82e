"""Grad-CAM overlays (the ``grad-cam`` package) showing where the model looked for its decision."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from dfkd.data.preprocess import normalise, resize_and_crop
from dfkd.utils import sigmoid

MIN_OVERLAY_SIDE = 256


class DecisionTarget:
    """Grad-CAM target on a single fake logit: the logit for a fake decision, its negation for a real one."""

    def __init__(self, fake: bool) -> None:
        self.sign = 1.0 if fake else -1.0

    def __call__(self, fake_logit: torch.Tensor) -> torch.Tensor:
        return self.sign * fake_logit.reshape(())


def default_target_layer(model: nn.Module) -> nn.Module:
    """The module Grad-CAM reads: the model's last stage when it has ``stages``, else its last Conv2d."""
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.ModuleList) and len(stages):
        return stages[-1]
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return convolutions[-1]


def gradcam_overlay(
    model: nn.Module,
    image: Image.Image,
    preprocessing: dict[str, Any],
    *,
    device: str | torch.device = "cpu",
    target_layer: nn.Module | None = None,
    threshold: float = 0.5,
) -> Image.Image:
    """The model's input view of ``image`` with its Grad-CAM heat map blended in (at least 256 px square).

    The map explains the decision the model takes at ``threshold`` (the card's, as ``predict`` labels): evidence for
    "fake" when the fake probability reaches it, for "real" otherwise.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image

    view = resize_and_crop(image.convert("RGB"), int(preprocessing["resize_size"]), int(preprocessing["input_size"]))
    pixels = np.asarray(view)
    inputs = torch.from_numpy(normalise(pixels, preprocessing["mean"], preprocessing["std"]))[None].to(device)
    model.eval()
    with torch.no_grad():
        fake_logit = float(model(inputs).reshape(-1)[0])
    with GradCAM(model=model, target_layers=[target_layer or default_target_layer(model)]) as cam:
        heat = cam(input_tensor=inputs, targets=[DecisionTarget(sigmoid(fake_logit) >= threshold)])[0]
    overlay = show_cam_on_image(pixels.astype(np.float32) / 255.0, heat, use_rgb=True, image_weight=0.6)
    result = Image.fromarray(overlay)
    if result.width < MIN_OVERLAY_SIDE:
        result = result.resize((MIN_OVERLAY_SIDE, MIN_OVERLAY_SIDE), Image.BILINEAR)
    return result
