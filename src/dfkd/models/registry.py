"""Model registry: typed keyword-only builders looked up by name through `create_model`."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dfkd.card import IMAGENET_MEAN, IMAGENET_STD
from dfkd.models.grey_input import GreyInput

logger = logging.getLogger(__name__)

TIMM_PREFIX = "timm/"
ROLES = ("student", "teacher")


def make_preprocessing(
    resize_size: int = 256,
    input_size: int = 224,
    mean: list[float] | tuple[float, ...] = IMAGENET_MEAN,
    std: list[float] | tuple[float, ...] = IMAGENET_STD,
) -> dict[str, Any]:
    """A preprocessing dict; the defaults are the reference's Resize(256) → CenterCrop(224) → ImageNet mean/std."""
    return {"resize_size": int(resize_size), "input_size": int(input_size), "mean": list(mean), "std": list(std)}


@dataclass(frozen=True)
class ModelSpec:
    """A registered builder, its role and the preprocessing its weights expect."""

    name: str
    builder: Callable[..., nn.Module]
    role: str
    preprocessing: dict[str, Any]
    listed: bool = True


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, role: str, preprocessing: dict[str, Any] | None = None, listed: bool = True
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a keyword-only model builder under `name` (decorator); a duplicate name is an error.

    ``listed=False``: a model only rebuilt from a model file (an ensemble), never trained by name, so `list_models`
    leaves it out.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if name.startswith(TIMM_PREFIX):
        raise ValueError(f"names starting with {TIMM_PREFIX!r} are reserved for timm models: {name!r}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__qualname__})")
        _REGISTRY[name] = ModelSpec(name, builder, role, copy.deepcopy(preprocessing or make_preprocessing()), listed)
        return builder

    return decorator


def list_models(role: str | None = None) -> list[str]:
    """Registered model names one can train, sorted, optionally only those of one role ("student" or "teacher")."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES} or None, got {role!r}")
    return sorted(name for name, spec in _REGISTRY.items() if spec.listed and (role is None or spec.role == role))


def is_known_model(name: str) -> bool:
    """Whether `create_model(name)` can build this name (registered, or a model timm knows as `timm/<name>`)."""
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.is_model(name[len(TIMM_PREFIX) :])
    return name in _REGISTRY


def _unknown_model_message(name: str) -> str:
    return f"unknown model {name!r}; known models: {', '.join(list_models())} (or 'timm/<any timm model name>')"


def _lookup(name: str) -> ModelSpec:
    if name.startswith(TIMM_PREFIX):
        from dfkd.models import teacher

        timm_name = name[len(TIMM_PREFIX) :]
        if not is_known_model(name):
            raise ValueError(f"timm does not know the model {timm_name!r} (from {name!r})")
        return ModelSpec(name, teacher.timm_builder(timm_name), "teacher", teacher.timm_preprocessing(timm_name))
    if name not in _REGISTRY:
        raise ValueError(_unknown_model_message(name))
    return _REGISTRY[name]


def default_preprocessing(name: str) -> dict[str, Any]:
    """The preprocessing (resize_size, input_size, mean, std) a model expects, without building it."""
    return copy.deepcopy(_lookup(name).preprocessing)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model (or `timm/<name>`) whose forward maps [B, 3, H, W] to fake logits [B].

    ``grey=True`` (any student or teacher): the model's first layer turns the image into its luminance
    (`GreyInput`), so it cannot use colour.

    The model carries `dfkd_arch` (name and kwargs, minus `pretrained`, enough to rebuild it), `dfkd_role` and
    `dfkd_preprocessing`.
    """
    spec = _lookup(name)
    builder_kwargs = {key: value for key, value in kwargs.items() if key != "grey"}
    grey = kwargs.get("grey", False)
    if not isinstance(grey, bool):
        raise TypeError(f"cannot build {name!r}: grey must be true or false, got {grey!r}")
    try:
        model = spec.builder(**builder_kwargs)
    except TypeError as error:
        raise TypeError(f"cannot build {name!r} with kwargs {sorted(kwargs)}: {error}") from error
    if grey:
        if not hasattr(model, "_input_transform"):  # the slot SmallResNet and Teacher keep for an input layer
            raise TypeError(f"cannot build {name!r} with grey=True: it has no input layer to make colour-blind")
        model._input_transform = GreyInput()
    model.dfkd_arch = {"name": name, "kwargs": {key: value for key, value in kwargs.items() if key != "pretrained"}}
    model.dfkd_role = spec.role
    model.dfkd_preprocessing = copy.deepcopy(spec.preprocessing)
    logger.debug("created %s (%s) with %s", name, spec.role, kwargs)
    return model


def input_size_error(model: nn.Module, side: int) -> str | None:
    """Why ``model`` cannot take a batch of ``side``-px square images, or None when it can: a network that pools
    globally takes any size, a ViT only its own. Two zero images without gradients; on the meta device this reads no
    weight, allocates nothing and leaves the random state as it was."""
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, side, side, device=next(model.parameters()).device))
    except (RuntimeError, ValueError, AssertionError) as error:  # shape checks raise any of these
        return str(error)
    return None
