"""Reading weight files (safetensors or torch state dicts), loading them strictly, and the weights' digest."""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from dfkd.card import ModelFileError, require_file

logger = logging.getLogger(__name__)

_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module")
_MAX_KEYS_SHOWN = 20


def _format_keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = f" … and {len(keys) - _MAX_KEYS_SHOWN} more" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"[{shown}{more}]"


def mismatch_message(source: str, missing: Iterable[str], unexpected: Iterable[str]) -> str:
    """Describe a strict-loading key mismatch, naming the missing and unexpected keys."""
    missing, unexpected = list(missing), list(unexpected)
    return (
        f"{source}: weights do not match the architecture: {len(missing)} missing keys {_format_keys(missing)}, "
        f"{len(unexpected)} unexpected keys {_format_keys(unexpected)}"
    )


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` file or a torch state dict (`torch.load(weights_only=True)`, nothing unpickled)."""
    path = Path(path)
    require_file(path, "weight file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message goes on to advise weights_only=False or allow-listing the global: both would run or build
        # what the file asks for, which is what refusing it prevents, so only what was refused is passed on.
        blocked = _BLOCKED_GLOBAL.search(str(error))
        if blocked is None:
            detail = _UNPICKLER_DETAIL.search(str(error))
            reason = detail.group(1).strip() if detail else "UnpicklingError"
            raise ModelFileError(f"{path}: not a readable torch state dict ({reason})") from None
        raise ModelFileError(
            f"{path}: refused: unpickling it would build {blocked.group(1)}, not tensors; dfkd reads only plain state "
            "dicts: save one with torch.save(model.state_dict(), ...) or use .safetensors"
        ) from None
    except Exception as error:  # torch raises many kinds (RuntimeError, EOFError …)
        raise ModelFileError(f"{path}: not a readable torch state dict ({type(error).__name__}: {error})") from error
    return _as_state_dict(loaded, path)


# What torch's weights-only unpickler names in its refusals: a global it will not build, or a pickle it cannot parse.
_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


# Checkpoints nest their weights a level or two deep; a dict that contains itself must not loop forever.
_MAX_NESTING = 8


def _as_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    # Training checkpoints often nest the weights under one of a few conventional keys.
    for _ in range(_MAX_NESTING):
        if not isinstance(loaded, Mapping) or all(isinstance(value, torch.Tensor) for value in loaded.values()):
            break
        nested = next((key for key in _NESTED_STATE_KEYS if isinstance(loaded.get(key), Mapping)), None)
        if nested is None:
            raise ModelFileError(f"{path}: holds a dict with non-tensor values and no 'state_dict' / 'model' entry")
        loaded = loaded[nested]
    else:
        raise ModelFileError(f"{path}: the weights are nested more than {_MAX_NESTING} dicts deep (or in a cycle)")
    if not isinstance(loaded, Mapping):
        raise ModelFileError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    if not all(isinstance(key, str) for key in loaded):
        raise ModelFileError(f"{path}: a state dict's keys are parameter names; this one has keys that are not text")
    state = dict(loaded)
    if state and all(key.startswith("module.") for key in state):  # saved from DataParallel / DDP
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module` strictly; any missing, unexpected or mis-shaped key raises ModelFileError."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ModelFileError(mismatch_message(source, missing, unexpected))
    wrong_shapes = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if tuple(state[key].shape) != tuple(tensor.shape)
    ]
    if wrong_shapes:
        shown = "; ".join(wrong_shapes[:_MAX_KEYS_SHOWN])
        raise ModelFileError(f"{source}: {len(wrong_shapes)} tensors have the wrong shape: {shown}")
    module.load_state_dict(state, strict=True)


def weights_digest(path: str | Path) -> str:
    """SHA-256 of a safetensors file's tensors (name, dtype, shape and bytes, in sorted name order), metadata excluded.

    Rewriting a model file's card (a calibrated threshold, new metrics) leaves the digest unchanged; changing any
    weight, buffer, dtype or shape changes it.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    require_file(path, "weight file")
    digest = hashlib.sha256()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for name in sorted(handle.keys()):
                tensor = handle.get_tensor(name).contiguous()
                digest.update(f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0".encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from error
    return digest.hexdigest()
