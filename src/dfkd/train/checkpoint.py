"""The loop's resumable state and ``last.ckpt``: weights, optimiser, schedule, weight average, RNG, epoch position."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning_fabric import Fabric
from torch.optim.swa_utils import AveragedModel


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


def save_checkpoint(
    fabric: Fabric, path: Path, model, optimizer, scheduler, state: LoopState, ema: AveragedModel | None = None
) -> None:
    """Write the run's resumable state to ``path`` (Fabric: atomic, rank 0 writes)."""
    payload = {
        "model": model,
        **({"ema": ema} if ema is not None else {}),
        "optimizer": optimizer,
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "loop": state.__dict__.copy(),
        "rng": _rng_state(),
    }
    fabric.save(path, payload)


def load_checkpoint(
    fabric: Fabric, path: Path, model, optimizer, scheduler, ema: AveragedModel | None = None
) -> LoopState:
    """Restore what :func:`save_checkpoint` wrote into the given objects and the RNGs; the loop's state."""
    payload = {"model": model, "optimizer": optimizer, **({"ema": ema} if ema is not None else {})}
    remainder = fabric.load(path, payload, weights_only=False)
    if scheduler is not None and remainder.get("scheduler"):
        scheduler.load_state_dict(remainder["scheduler"])
    _set_rng_state(remainder["rng"])
    return LoopState(**remainder["loop"])


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    random.setstate(state["python"])
