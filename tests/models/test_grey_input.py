"""grey=True: a model that cannot see colour, in PyTorch, through its model file and in ONNX / INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dfkd.deploy.onnx import export_onnx, quantize_int8
from dfkd.deploy.onnx_format import read_onnx_card
from dfkd.models import create_model, load_model, save_model
from dfkd.models.ensemble import build_ensemble
from dfkd.models.grey_input import LUMA_WEIGHTS
from dfkd.models.registry import make_preprocessing
from tests.inference.helpers import vary_batchnorm


def recoloured(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``images`` with their colour changed and their luma (the grey input's weighted sum) kept."""
    generator = torch.Generator().manual_seed(seed)
    red_shift = torch.randn(images.shape[0], 1, *images.shape[2:], generator=generator)
    changed = images.clone()
    changed[:, 0:1] += red_shift
    changed[:, 1:2] -= red_shift * LUMA_WEIGHTS[0] / LUMA_WEIGHTS[1]
    return changed


def bn_statistics(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with BatchNorm statistics drawn from ``seed`` (`vary_batchnorm`)."""
    torch.manual_seed(seed)
    return vary_batchnorm(model)


def network_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What the network after any input layer receives (a teacher's backbone, a student's stem) on a forward pass."""
    seen = []
    first = model.backbone if hasattr(model, "backbone") else model.stem
    handle = first.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model(images)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", ["resnet8_fast", "resnet8", "mobilenet_v2"])
def test_a_grey_model_ignores_colour_and_a_colour_model_does_not(name: str, images_64: torch.Tensor) -> None:
    torch.manual_seed(0)
    grey = bn_statistics(create_model(name, grey=True))
    torch.manual_seed(0)
    colour = bn_statistics(create_model(name))
    changed = recoloured(images_64)
    with torch.inference_mode():
        assert torch.allclose(grey(images_64), grey(changed), atol=1e-4)
        # What the network sees, not only logits: a fresh teacher gives nearly the same logit to any image.
        assert torch.allclose(network_input(grey, images_64), network_input(grey, changed), atol=1e-5)
        assert not torch.allclose(network_input(colour, images_64), network_input(colour, changed), atol=1e-2)
    # The same weights: grey=True adds no parameter or saved tensor, so files differ only in their card.
    assert grey.state_dict().keys() == colour.state_dict().keys()


def test_grey_must_be_a_boolean_and_needs_an_input_layer() -> None:
    with pytest.raises(TypeError, match="grey must be true or false"):
        create_model("resnet8_fast", grey="yes")
    with pytest.raises(TypeError, match="no input layer"):
        create_model("ensemble", members=[{"name": "resnet8_fast", "kwargs": {}}] * 2, grey=True)


def test_grey_travels_in_the_model_file_and_in_ensembles(tmp_path: Path, images_64: torch.Tensor) -> None:
    model = bn_statistics(create_model("resnet8_fast", grey=True))
    model.dfkd_preprocessing = make_preprocessing(72, 64)
    save_model(model, tmp_path / "grey.safetensors")
    loaded, card = load_model(tmp_path / "grey.safetensors")
    assert card.architecture.kwargs == {"grey": True}
    with torch.inference_mode():
        assert torch.equal(loaded(images_64), model(images_64))
        assert torch.allclose(loaded(recoloured(images_64)), loaded(images_64), atol=1e-4)
    other = bn_statistics(create_model("resnet8_fast", grey=True), seed=1)
    other.dfkd_preprocessing = make_preprocessing(72, 64)
    save_model(other, tmp_path / "grey1.safetensors")
    ensemble, _ = build_ensemble([tmp_path / "grey.safetensors", tmp_path / "grey1.safetensors"])
    with torch.inference_mode():
        assert torch.allclose(ensemble(recoloured(images_64)), ensemble(images_64), atol=1e-4)


def test_onnx_export_keeps_the_grey_input_and_int8_keeps_it_fp32(
    tmp_path: Path, images_64: torch.Tensor, easy_manifest: Path
) -> None:
    model = bn_statistics(create_model("resnet8_fast", grey=True))
    model.dfkd_preprocessing = make_preprocessing(72, 64)
    save_model(model, tmp_path / "grey.safetensors")
    fp32 = tmp_path / "grey.onnx"
    assert export_onnx(tmp_path / "grey.safetensors", fp32)["parity"]["passed"]
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    original, changed = (session.run(None, {"images": x.numpy()})[0] for x in (images_64, recoloured(images_64)))
    assert np.abs(original - changed).max() <= 1e-4
    quantize_int8(fp32, tmp_path / "grey.int8.onnx", easy_manifest, n_calibration=8)
    kept = read_onnx_card(tmp_path / "grey.int8.onnx").export["quantization"]["fp32_nodes"]
    ops = {node.name: node.op_type for node in onnx.load(str(tmp_path / "grey.int8.onnx")).graph.node}
    # The grey layer's nodes, then the stem convolution, stay fp32 (and only they: one Conv).
    assert len(kept) > 1 and [ops[name] for name in kept].count("Conv") == 1 and ops[kept[-1]] == "Conv"
