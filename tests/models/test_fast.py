"""Faster execution of the same models: channels-last weights and BatchNorm folding keep the function."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfkd.models import create_model, load_model, save_model
from dfkd.models.fast import channels_last_input, frozen_inference_model, to_channels_last


def _trained_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them has something to get wrong."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet8_fast", "mobilenet_v2"])
def test_frozen_model_folds_batchnorm_and_keeps_the_logits(name: str) -> None:
    model = _trained_batchnorm(create_model(name))
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        frozen = frozen_inference_model(model)
        got = frozen(channels_last_input(images))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert all(not p.requires_grad for p in frozen.parameters())
    conv = next(m for m in frozen.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


class _DataDependent(nn.Module):
    """A forward pass torch.fx cannot trace (Python control flow on a tensor's value)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return x if x.sum() > 0 else -x


def test_an_untraceable_model_is_kept_unfolded_not_refused() -> None:
    model = _trained_batchnorm(_DataDependent())
    images = torch.randn(2, 3, 8, 8)
    frozen = frozen_inference_model(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    with torch.no_grad():
        torch.testing.assert_close(frozen(images), model(images))


def test_channels_last_weights_save_and_load_as_the_same_model(tmp_path: Path) -> None:
    model = to_channels_last(_trained_batchnorm(create_model("resnet8_fast")))
    save_model(model, tmp_path / "m.safetensors")
    loaded, _ = load_model(tmp_path / "m.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # saving did not convert the model itself
