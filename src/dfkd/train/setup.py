"""The parts a run wires together: Fabric, its loggers, the student, optimiser, schedule and weight average."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from lightning_fabric.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dfkd.config import ConfigError, RunConfig
from dfkd.distill.distillers import Distiller
from dfkd.models.fast import to_channels_last
from dfkd.models.registry import input_size_error
from dfkd.train.checkpoint import describe_architecture


def tensorboard_logger(config: RunConfig, run_dir: Path) -> Any | None:
    """Fabric's TensorBoard logger writing to ``run_dir/tensorboard``, or None (off, or auto and not installed)."""
    if config.train.tensorboard == "off":
        return None
    installed = any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))
    if not installed:
        if config.train.tensorboard == "on":
            raise ValueError("train.tensorboard=on needs tensorboard or tensorboardX: pip install tensorboard")
        return None
    from lightning_fabric.loggers import TensorBoardLogger

    return TensorBoardLogger(root_dir=run_dir, name="tensorboard", version="")


def build_fabric(config: RunConfig, loggers: list[Any] | None = None) -> Fabric:
    """A Fabric for the configured accelerator, devices, strategy and precision."""
    train = config.train
    strategy = train.strategy
    if strategy == "auto" and train.accelerator == "cpu" and str(train.devices) not in ("1", "auto"):
        strategy = "ddp"
    try:
        return Fabric(
            accelerator=train.accelerator,
            devices=train.devices,
            num_nodes=train.num_nodes,
            strategy=strategy,
            precision=train.precision,
            loggers=loggers or None,
        )
    except (
        TypeError,
        ValueError,
        MisconfigurationException,
    ) as error:  # Lightning's refusal of a combination the config allows
        raise ConfigError(
            f"train.devices={train.devices!r} with train.accelerator={train.accelerator} "
            f"(strategy {strategy}, precision {train.precision}): {error}"
        ) from None


def student_view(config: RunConfig) -> dict:
    """Resize, crop, mean and std the trained model sees (config values, else the architecture's defaults)."""
    from dfkd.models import default_preprocessing

    defaults = default_preprocessing(config.model.name)
    return {
        "resize_size": config.data.resize_size,
        "input_size": config.data.input_size,
        "mean": list(config.data.mean or defaults["mean"]),
        "std": list(config.data.std or defaults["std"]),
    }


def _create_configured(name: str, kwargs: dict[str, Any]) -> nn.Module:
    from dfkd.models import create_model

    try:
        return create_model(name, **kwargs)
    except TypeError as error:  # an unknown or ill-typed keyword: the config's fault, not a bug to trace
        raise ConfigError(f"model.kwargs: {error}") from None


def check_model_settings(config: RunConfig) -> None:
    """Refuse ``model.kwargs`` the architecture does not take, and a ``data.train_patch`` it cannot take, before any
    data is read or teacher run.

    The model is built on the meta device (no memory, no weights read, the random state untouched), so a typo costs
    nothing and the run's results stay what they were without the check."""
    with torch.device("meta"):
        model = _create_configured(config.model.name, dict(config.model.kwargs))
        patch = config.data.train_patch
        if patch is not None:  # trained on patches, scored on whole views: the network must take both sizes
            for side in (patch, config.data.input_size):
                if (error := input_size_error(model, side)) is not None:
                    raise ConfigError(
                        f"data.train_patch={patch}: {config.model.name} cannot take {side}-px inputs ({error}); "
                        "it needs a network that pools globally"
                    )
    parameter_groups(config, model)  # refuses optim.backbone_lr_scale for a model without a backbone


def build_student(config: RunConfig) -> nn.Module:
    """The configured model, fresh or from ``model.pretrained``, in channels-last with ``train.channels_last``."""
    kwargs = dict(config.model.kwargs)
    if config.model.pretrained:
        kwargs["pretrained"] = config.model.pretrained
    model = _create_configured(config.model.name, kwargs)
    return to_channels_last(model) if config.train.channels_last else model


def parameter_groups(config: RunConfig, model: nn.Module) -> list[dict[str, Any]]:
    """``model``'s parameters in optimiser groups: one, or with ``optim.backbone_lr_scale`` below 1 the head (and any
    other non-backbone parameter) at ``optim.lr`` first, then the backbone at the scaled rate."""
    scale = config.optim.backbone_lr_scale
    if scale == 1.0:
        return [{"params": list(model.parameters())}]
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ConfigError(
            f"optim.backbone_lr_scale={scale}: {config.model.name} has no pretrained backbone (only teachers do); "
            "leave it at 1"
        )
    in_backbone = {id(parameter) for parameter in backbone.parameters()}
    head = [parameter for parameter in model.parameters() if id(parameter) not in in_backbone]
    return [{"params": head}, {"params": list(backbone.parameters()), "lr": config.optim.lr * scale}]


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimiser over ``model``'s parameters (`parameter_groups`)."""
    optim = config.optim
    params = parameter_groups(config, model)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(params, lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum)


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer):
    """The configured learning-rate schedule (stepped once per epoch), or None."""
    sched = config.scheduler
    if sched.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", patience=sched.patience, factor=sched.factor, min_lr=sched.min_lr
        )
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train.epochs, eta_min=sched.min_lr)
    return None


def build_weight_average(config: RunConfig, model: nn.Module) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights and BatchNorm statistics (``train.ema_decay``)."""
    decay = config.train.ema_decay
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@dataclass
class Student:
    """The model being trained and what updates it."""

    model: nn.Module  # Fabric-wrapped: forward, backward, gradient sync
    raw: nn.Module  # the module itself: the weight average follows it, the distiller hooks into it
    optimizer: Any
    scheduler: Any = None
    ema: AveragedModel | None = None
    architecture: dict[str, Any] | None = None  # what the checkpoint records: name, kwargs, structure digest

    @property
    def scored(self) -> nn.Module:
        """What validation and model selection see: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def kept(self) -> nn.Module:
        """What the model file holds."""
        return self.ema.module if self.ema is not None else self.raw


def setup_student(fabric: Fabric, config: RunConfig, distiller: Distiller) -> Student:
    """The student, its optimiser (both set up by Fabric), schedule and weight average; the distiller attached."""
    raw = build_student(config)
    model, optimizer = fabric.setup(raw, build_optimizer(config, raw))
    ema = build_weight_average(config, raw)  # before the distiller's hooks: the average is a copy without them
    architecture = describe_architecture(raw, config.model.name, dict(config.model.kwargs))
    distiller.attach(raw)
    return Student(model, raw, optimizer, build_scheduler(config, optimizer), ema, architecture)
