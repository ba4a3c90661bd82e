"""The ResNet8 student family: the reference ResNet8, a fast variant of the same size, and wider versions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dfkd.models.registry import register_model
from dfkd.models.weights import load_state_dict_strict, read_state_dict_file

logger = logging.getLogger(__name__)

REFERENCE_WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut (1x1 conv + BN projection where the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block: [B, C_in, H, W] → [B, C_out, H / stride, W / stride]."""
        residual = self.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        return self.relu(residual + self.shortcut(x))


class HighPassResidual(nn.Module):
    """Appends each image's high-frequency residual to its channels: [B, 3, H, W] → [B, 6, H, W].

    The residual is the image minus its 2×2-block mean (NPR-style): zero where the image is locally flat, large at
    fine detail. A strided stem and a max-pool keep one pixel in 16; the residual lets them keep *how much* fine
    detail there was, the hoped-for tell of a face generated at lower resolution than its surroundings. Measured, it
    did not help: the student fed it scored lower on unseen face swaps and no better on unseen StyleGAN2 faces
    (docs/results/generalisation.md, fourth round). No parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The image and its residual, concatenated along channels."""
        block_mean = F.avg_pool2d(x, kernel_size=2, ceil_mode=True)
        return torch.cat([x, x - F.interpolate(block_mean, size=x.shape[-2:], mode="nearest")], dim=1)


class SpaceToDepth(nn.Module):
    """Folds each ``factor``×``factor`` block of pixels into channels: [B, C, H, W] → [B, C·f², ⌈H/f⌉, ⌈W/f⌉].

    Downsamples as much as a stride-2 stem and a max-pool (f = 4) while losing no pixel: the convolution after it
    sees every pixel of its block. Sides that ``factor`` does not divide are zero-padded on the bottom and right.
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.unshuffle = nn.PixelUnshuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to a multiple of ``factor`` and fold the blocks into channels."""
        pad_h, pad_w = -x.shape[-2] % self.factor, -x.shape[-1] % self.factor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.unshuffle(x)


class SmallResNet(nn.Module):
    """A small CIFAR-style ResNet of BasicBlocks with a single fake logit.

    Args:
        widths: channels of each stage; the reference ResNet8 uses (16, 32, 64).
        blocks_per_stage: BasicBlocks in each stage (2 for ResNet8).
        stem_stride: stride of the 3x3 stem convolution (1 in the reference).
        stem_pool: add a 3x3 stride-2 max-pool after the stem (False in the reference).
        space_to_depth: fold 4×4 pixel blocks into channels before the stem convolution (stride 1, no pool): the
            first block sees a quarter of the input side, as with ``stem_stride=2, stem_pool=True``, with every
            pixel kept.
        high_pass: give the stem the image's high-frequency residual as three more channels (`HighPassResidual`).
    """

    def __init__(
        self,
        widths: Sequence[int] = REFERENCE_WIDTHS,
        blocks_per_stage: int = 2,
        stem_stride: int = 1,
        stem_pool: bool = False,
        space_to_depth: bool = False,
        high_pass: bool = False,
    ) -> None:
        super().__init__()
        if space_to_depth and (stem_stride != 1 or stem_pool):
            raise ValueError("space_to_depth already downsamples by 4: use it with stem_stride=1 and no stem_pool")
        stem: list[nn.Module] = []
        in_channels = 3
        if high_pass:
            stem.append(HighPassResidual())
            in_channels *= 2
        if space_to_depth:
            stem.append(SpaceToDepth(4))
            in_channels *= 16
        stem += [
            nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        if stem_pool:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages = []
        in_channels = widths[0]
        for stage_index, out_channels in enumerate(widths):
            stride = 1 if stage_index == 0 else 2
            blocks = [BasicBlock(in_channels, out_channels, stride)]
            blocks += [BasicBlock(out_channels, out_channels) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, 1)
        self.feature_channels = list(widths)
        # `GreyInput` for a model built with grey=True. Underscored: a public None would enter the architecture digest
        # and refuse every model file saved before the attribute existed.
        self._input_transform: nn.Module | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs for feature-level distillation: one [B, C_i, h_i, w_i] tensor per stage."""
        stage_outputs = []
        if self._input_transform is not None:
            x = self._input_transform(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        return stage_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake logits [B] of images [B, 3, H, W]."""
        last_stage = self.features(x)[-1]
        return self.fc(torch.flatten(self.pool(last_stage), 1)).squeeze(1)


def _build(
    pretrained: str | Path | None, width: int, fast: bool, space_to_depth: bool = False, high_pass: bool = False
) -> SmallResNet:
    model = SmallResNet(
        widths=tuple(width * channels for channels in REFERENCE_WIDTHS),
        stem_stride=2 if fast else 1,
        stem_pool=fast,
        space_to_depth=space_to_depth,
        high_pass=high_pass,
    )
    if pretrained is not None:
        if str(pretrained) == "imagenet":
            raise ValueError("students have no ImageNet weights; pass a local weight file or None")
        load_state_dict_strict(model, read_state_dict_file(pretrained), str(pretrained))
        logger.info("loaded student weights from %s", pretrained)
    return model


@register_model("resnet8", role="student")
def resnet8(*, pretrained: str | Path | None = None) -> SmallResNet:
    """The reference ResNet8 (16-32-64, full-resolution first stage): 174,673 parameters, 2.61 GFLOPs at 224."""
    return _build(pretrained, width=1, fast=False)


@register_model("resnet8_w2", role="student")
def resnet8_w2(*, pretrained: str | Path | None = None) -> SmallResNet:
    """ResNet8 at twice the width (32-64-128)."""
    return _build(pretrained, width=2, fast=False)


@register_model("resnet8_w4", role="student")
def resnet8_w4(*, pretrained: str | Path | None = None) -> SmallResNet:
    """ResNet8 at four times the width (64-128-256)."""
    return _build(pretrained, width=4, fast=False)


@register_model("resnet8_fast", role="student")
def resnet8_fast(*, pretrained: str | Path | None = None) -> SmallResNet:
    """ResNet8 with a stride-2 stem and a max-pool: the same parameters, about 16x fewer FLOPs."""
    return _build(pretrained, width=1, fast=True)


@register_model("resnet8_s2d", role="student")
def resnet8_s2d(*, pretrained: str | Path | None = None) -> SmallResNet:
    """ResNet8 whose stem folds 4×4 pixel blocks into channels: the fast variant's FLOPs order, no pixel dropped
    (measured worse than ``resnet8_fast`` on unseen face swaps: docs/results/generalisation.md)."""
    return _build(pretrained, width=1, fast=False, space_to_depth=True)


@register_model("resnet8_fast_hp", role="student")
def resnet8_fast_hp(*, pretrained: str | Path | None = None) -> SmallResNet:
    """The fast ResNet8 with the image's high-frequency residual as three more input channels."""
    return _build(pretrained, width=1, fast=True, high_pass=True)


@register_model("resnet8_fast_w2", role="student")
def resnet8_fast_w2(*, pretrained: str | Path | None = None) -> SmallResNet:
    """The fast ResNet8 at twice the width (32-64-128)."""
    return _build(pretrained, width=2, fast=True)


@register_model("resnet8_fast_w4", role="student")
def resnet8_fast_w4(*, pretrained: str | Path | None = None) -> SmallResNet:
    """The fast ResNet8 at four times the width (64-128-256)."""
    return _build(pretrained, width=4, fast=True)
