"""Faster execution of the same models: channels-last memory format and, for a frozen network, conv + BatchNorm
folding. Numerics stay those of the float model (differences at float rounding level, ~1e-5 in logits).

On CPU, oneDNN runs depthwise and small convolutions in NHWC (channels-last) much faster than in NCHW, and a
BatchNorm folded into the convolution before it costs nothing at inference: the frozen MobileNetV2 teacher's forward
pass takes about 0.4 of the time and a ResNet8 student's training step about 0.77 of it
(``python benchmarks/train_step.py`` prints the ratios on the machine at hand).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D parameters and buffers in channels-last memory format (in place; returned)."""
    return model.to(memory_format=torch.channels_last)


def channels_last_input(images: torch.Tensor) -> torch.Tensor:
    """A 4-D image batch in channels-last memory format (other tensors unchanged)."""
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images


def frozen_inference_model(model: nn.Module, *, fold_batchnorm: bool = True, channels_last: bool = True) -> nn.Module:
    """An inference-only copy of ``model`` (eval mode, no gradients) that computes the same function faster.

    ``fold_batchnorm`` traces the model with ``torch.fx`` and folds every BatchNorm into the convolution feeding it.
    The traced module calls only its leaf modules, so forward hooks on container blocks no longer fire: keep it off
    when features are recorded by hooks (:class:`dfkd.distill.features.FeatureRecorder`). A model ``torch.fx``
    cannot trace is kept unfolded (logged), never refused.
    """
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    if fold_batchnorm:
        from torch.fx.experimental.optimization import fuse

        try:
            folded = fuse(frozen)
        except Exception as error:  # torch.fx raises many kinds (TraceError, TypeError, ...) on dynamic code
            logger.info("BatchNorm folding skipped: torch.fx cannot trace %s (%s)", type(model).__name__, error)
        else:
            for name in ("dfkd_arch", "dfkd_preprocessing", "dfkd_role"):
                if hasattr(frozen, name):
                    setattr(folded, name, getattr(frozen, name))
            frozen = folded.eval().requires_grad_(False)
    return to_channels_last(frozen) if channels_last else frozen
