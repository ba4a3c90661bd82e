"""The loop's resumable state and ``last.ckpt``: weights, optimiser, schedule, weight average, RNG, epoch position.

``last.ckpt`` is one safetensors file, written atomically (temporary file renamed into place): the tensors (model,
weight average, optimiser state, torch and NumPy RNG) as tensors, and everything else (loop position, history,
scheduler, optimiser hyper-parameters, Python's RNG, the architecture) as JSON in its metadata. Loading it parses
JSON and copies tensors; nothing in it is executed, unlike a pickled checkpoint.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric
from torch import nn
from torch.optim.swa_utils import AveragedModel

from dfkd.models.checkpoint import architecture_digest, read_safetensors_header
from dfkd.models.weights import ModelFileError
from dfkd.utils import save_tensors

STATE_KEY = "dfkd-training-state"
STATE_FORMAT = "dfkd-training-state"
STATE_VERSION = 1


class CheckpointError(ValueError):
    """``last.ckpt`` is missing, damaged, not dfkd's, or from another architecture than the configured one."""


@dataclass
class LoopState:
    """Everything the loop needs to continue exactly where it stopped."""

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    best_value: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0
    running_loss: float = 0.0
    running_count: int = 0
    history: list[dict] = field(default_factory=list)


def describe_architecture(model: nn.Module, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about the network it holds (registry name, arguments, structure digest)."""
    return {"name": name, "kwargs": kwargs, "digest": architecture_digest(model)}


def save_checkpoint(
    fabric: Fabric,
    path: Path,
    model: nn.Module,
    optimizer,
    scheduler,
    state: LoopState,
    ema: AveragedModel | None = None,
    architecture: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Write the run's resumable state to ``path`` atomically (rank 0 writes; every rank waits for it).

    ``model`` is the module itself (not Fabric's wrapper); ``architecture`` (:func:`describe_architecture`) is
    checked by :func:`load_checkpoint`; ``settings`` (the run's config, JSON) by the trainer before it resumes.
    """
    if fabric.is_global_zero:
        tensors, optimizer_record = _optimizer_tensors(optimizer.state_dict())
        tensors.update(_prefixed("model.", model.state_dict()))
        if ema is not None:
            tensors.update(_prefixed("ema.", ema.state_dict()))
        numpy_state = np.random.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.numpy"] = torch.from_numpy(numpy_state[1].astype(np.int64))
        python_version, python_internal, python_gauss = random.getstate()
        record = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "architecture": architecture,
            "settings": settings,
            "has_ema": ema is not None,
            "loop": state.__dict__.copy(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "optimizer": optimizer_record,
            "rng": {
                "numpy": [numpy_state[0], *(_plain(item) for item in numpy_state[2:])],
                "python": [python_version, list(python_internal), python_gauss],
            },
        }
        save_tensors(tensors, path, metadata={STATE_KEY: json.dumps(record)})
    fabric.barrier()


def checkpoint_settings(path: Path) -> dict[str, Any] | None:
    """The run config a checkpoint was written under (its metadata only, no tensor read); None when it holds none
    (written before dfkd recorded it) or cannot be read (loading it names the problem)."""
    try:
        settings = read_checkpoint_record(path).get("settings")
    except CheckpointError:
        return None
    return settings if isinstance(settings, dict) else None


def read_checkpoint_record(path: Path) -> dict[str, Any]:
    """The JSON record of a ``last.ckpt`` (everything but its tensors), checked; :class:`CheckpointError` naming the
    file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        header = read_safetensors_header(path)
    except ModelFileError as error:
        raise CheckpointError(
            f"{error} (a damaged or pre-safetensors checkpoint: start over with --overwrite)"
        ) from None
    raw = (header.get("__metadata__") or {}).get(STATE_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: not a dfkd training checkpoint (no '{STATE_KEY}' metadata)")
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: damaged training checkpoint (its state is not JSON: {error})") from None
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a dfkd training checkpoint")
    if record.get("format_version") != STATE_VERSION:
        raise CheckpointError(
            f"{path}: training checkpoint version {record.get('format_version')!r} is not {STATE_VERSION}"
        )
    return record


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the JSON record of a ``last.ckpt``; :class:`CheckpointError` naming the file if unusable."""
    record = read_checkpoint_record(path)
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as error:  # SafetensorError for damaged data
        raise CheckpointError(f"{path}: unreadable checkpoint data ({type(error).__name__}: {error})") from None
    return tensors, record


def checkpoint_weights(path: Path, part: str = "model") -> dict[str, torch.Tensor]:
    """One state dict from a ``last.ckpt``: the raw weights (``"model"``) or the weight average (``"ema"``)."""
    tensors, _ = read_checkpoint(path)
    return _unprefixed(f"{part}.", tensors)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer,
    scheduler,
    ema: AveragedModel | None = None,
    architecture: dict[str, Any] | None = None,
) -> LoopState:
    """Restore what :func:`save_checkpoint` wrote into the given objects and the RNGs; the loop's state.

    Raises:
        CheckpointError: the file is damaged, or was written for another architecture than ``architecture``.
    """
    tensors, record = read_checkpoint(path)
    saved = record.get("architecture")
    if architecture is not None and saved is not None and saved != architecture:
        raise CheckpointError(
            f"{path}: the checkpoint holds {_describe(saved)} but the config builds {_describe(architecture)}; "
            "resume with the run's own config (its config.yaml), or start a new run (--overwrite replaces this one)"
        )
    if record.get("has_ema") != (ema is not None):
        raise CheckpointError(
            f"{path}: the checkpoint was written with{'' if record.get('has_ema') else 'out'} "
            "train.ema_decay; resume with the run's own config"
        )
    try:
        model.load_state_dict(_unprefixed("model.", tensors))
        if ema is not None:
            ema.load_state_dict(_unprefixed("ema.", tensors))
        optimizer.load_state_dict(_optimizer_state(record["optimizer"], tensors))
        if scheduler is not None and record.get("scheduler"):
            scheduler.load_state_dict(record["scheduler"])
        _set_rng_state(record["rng"], tensors)
        return LoopState(**record["loop"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: the checkpoint does not fit this run ({type(error).__name__}: {error})"
        ) from None


def _describe(architecture: dict[str, Any]) -> str:
    kwargs = architecture.get("kwargs") or {}
    return repr(architecture.get("name")) + (f" with {kwargs}" if kwargs else "")


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Clones: safetensors refuses tensors sharing memory, and the file must not alias live weights.
    return {prefix + key: value.detach().cpu().clone() for key, value in state.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _optimizer_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state into tensors (``optimizer.<param>.<name>``) and a JSON record of the rest."""
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for param, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param}.{name}"] = value.detach().cpu().clone()
            else:
                values.setdefault(str(param), {})[name] = value
    groups = [dict(group) for group in state_dict["param_groups"]]
    for group in groups:
        for key, value in group.items():
            if isinstance(value, torch.Tensor):  # a tensor learning rate (capturable / fused optimisers)
                group[key] = value.item()
    return tensors, {"param_groups": groups, "values": values}


def _optimizer_state(record: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for param, entries in record["values"].items():
        state.setdefault(int(param), {}).update(entries)
    for key, value in _unprefixed("optimizer.", tensors).items():
        param, name = key.split(".", 1)
        state.setdefault(int(param), {})[name] = value
    return {"state": state, "param_groups": record["param_groups"]}


def _set_rng_state(record: dict, tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    kind, *rest = record["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), *rest))
    version, internal, gauss = record["python"]
    random.setstate((version, tuple(internal), gauss))
