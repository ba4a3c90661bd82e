"""The self-describing model file: one `.safetensors` whose metadata says how to rebuild and use the model."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from dfkd.card import (
    Architecture,
    CardError,
    ModelCard,
    Preprocessing,
    card_from_dict,
    card_from_json,
)
from dfkd.models.registry import create_model, default_preprocessing, is_known_model, list_models
from dfkd.models.weights import ModelFileError, mismatch_message, require_file
from dfkd.utils import current_umask

logger = logging.getLogger(__name__)

METADATA_KEY = "dfkd"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


_STRUCTURE_TYPES = (bool, int, float, str, type(None))


def _hyper_parameters(module: nn.Module) -> str:
    """A module's public scalar attributes (channels, kernel, stride, eps, inplace, ...), sorted: what its forward
    depends on besides its tensors and its children."""
    items = []
    for key, value in sorted(vars(module).items()):
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _STRUCTURE_TYPES) or (
            isinstance(value, tuple) and all(isinstance(item, _STRUCTURE_TYPES) for item in value)
        ):
            items.append(f"{key}={value!r}")
    return ", ".join(items)


def architecture_digest(model: nn.Module) -> str:
    """SHA-256 of the network's structure: every submodule's path, class name and hyper-parameters (no weights).

    Two architectures with the same tensor shapes (``resnet8`` and ``resnet8_fast``) get different digests, so a card
    naming the wrong one is caught on load.
    """
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__name__}({_hyper_parameters(module)})\n".encode())
    return digest.hexdigest()


def card_for(model: nn.Module, **fields: Any) -> ModelCard:
    """The card of a model built by ``create_model`` (architecture, role, preprocessing), with ``fields`` set."""
    architecture = getattr(model, "dfkd_arch", None)
    if not isinstance(architecture, dict) or "name" not in architecture:
        raise ValueError("only models built by dfkd.models.create_model can be saved (no `dfkd_arch` attribute)")
    preprocessing = getattr(model, "dfkd_preprocessing", None) or default_preprocessing(architecture["name"])
    return ModelCard(
        architecture=Architecture(
            name=architecture["name"],
            kwargs=copy.deepcopy(architecture.get("kwargs") or {}),
            digest=architecture_digest(model),
        ),
        role=getattr(model, "dfkd_role", None),
        preprocessing=Preprocessing.model_validate(preprocessing),
        **fields,
    )


def save_model(model: nn.Module, path: str | Path, card: ModelCard | Mapping[str, Any] | None = None) -> None:
    """Write ``model`` built by ``create_model`` to one ``.safetensors`` file, atomically, with its card.

    ``card`` is the whole card, or card fields (``{"metrics": ..., "face_crop": ...}``) set on the model's own card
    (architecture, role, preprocessing, default threshold); fields are validated either way.
    """
    if not isinstance(card, ModelCard):
        fields = dict(card or {})
        try:
            card = card_from_dict({**card_for(model).to_json_dict(), **fields}, f"card of {Path(path).name}")
        except CardError as error:
            raise ValueError(str(error)) from None  # a programming error here, not a damaged file
    architecture = getattr(model, "dfkd_arch", None) or {}
    if architecture.get("name") not in (None, card.architecture.name):
        raise ValueError(f"the card names {card.architecture.name!r} but the model is {architecture.get('name')!r}")
    digest = architecture_digest(model)
    if card.architecture.digest is None:  # a card made without the model (an older file's): stamp it now
        card = card.model_copy(update={"architecture": card.architecture.model_copy(update={"digest": digest})})
    elif card.architecture.digest != digest:
        raise ValueError(f"the card's architecture digest {card.architecture.digest} is not the model's {digest}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if any(not tensor.is_contiguous() for tensor in model.state_dict().values()):
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # channels-last training weights
    try:
        safetensors.torch.save_model(model, str(temporary), metadata={METADATA_KEY: json.dumps(card.to_json_dict())})
        os.chmod(temporary, 0o666 & ~current_umask())  # safetensors creates 0600
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("saved %s to %s", card.architecture.name, path)


def update_card(path: str | Path, card: ModelCard, out: str | Path | None = None) -> None:
    """Rewrite a model file with a new card (same weights), atomically, in place or to ``out``; the weights digest
    does not change."""
    model, _ = load_model(path)
    save_model(model, path if out is None else out, card)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """Validate the safetensors framing (8-byte length, JSON header, data size) with messages a user can act on."""
    require_file(path)
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        length_bytes = handle.read(8)
        if len(length_bytes) < 8:
            raise ModelFileError(f"{path}: not a safetensors file (only {file_size} bytes; empty or truncated)")
        header_size = int.from_bytes(length_bytes, "little")
        if header_size == 0 or header_size > _MAX_HEADER_BYTES:
            raise ModelFileError(f"{path}: not a safetensors file (implausible header length {header_size})")
        if file_size < 8 + header_size:
            raise ModelFileError(
                f"{path}: truncated file: the header needs {8 + header_size} bytes, the file has {file_size}"
            )
        header_bytes = handle.read(header_size)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:  # RecursionError: nested [[[[…
        raise ModelFileError(f"{path}: not a safetensors file (header is not JSON: {error})") from error
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a safetensors file (header is not a JSON object)")
    try:
        data_size = max(
            (int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0
        )
    except (KeyError, TypeError, IndexError, ValueError, OverflowError) as error:
        raise ModelFileError(f"{path}: not a safetensors file (malformed tensor entry: {error!r})") from error
    if not isinstance(header.get("__metadata__", {}), dict):
        raise ModelFileError(f"{path}: not a safetensors file (its __metadata__ is not a JSON object)")
    if file_size < 8 + header_size + data_size:
        raise ModelFileError(f"{path}: truncated file: expected {8 + header_size + data_size} bytes, found {file_size}")
    return header


def read_model_card(path: str | Path) -> ModelCard:
    """Read and validate a dfkd model file's card without loading any tensor."""
    path = Path(path)
    return _card_of(read_safetensors_header(path), path)


def _card_of(header: dict[str, Any], path: Path) -> ModelCard:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(f"{path}: not a dfkd model file (a safetensors file without '{METADATA_KEY}' metadata)")
    if not isinstance(raw, str):  # safetensors metadata values are strings
        raise ModelFileError(f"{path}: not a dfkd model file (its '{METADATA_KEY}' metadata is not text)")
    return card_from_json(raw, str(path))


def _tensor_values_in(header: dict[str, Any]) -> int:
    """How many tensor elements a safetensors file holds, from its (already checked) header."""
    return sum(
        math.prod(int(side) for side in entry.get("shape", ()))
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict)
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a model from a dfkd model file (nothing unpickled); returns (model in eval mode, its card)."""
    path = Path(path)
    header = read_safetensors_header(path)  # read once: the card and the tensor sizes both come from it
    card = _card_of(header, path)
    name, kwargs = card.architecture.name, card.architecture.kwargs
    if not is_known_model(name):
        raise ModelFileError(
            f"{path}: unknown architecture {name!r}; known: {', '.join(list_models())} (or 'timm/<timm model name>')"
        )
    # The one builder argument that loads weights (from a hub, a URL or a file); save_model never writes it.
    if "pretrained" in kwargs:
        raise ModelFileError(
            f"{path}: the card's architecture arguments (pretrained) would load weights from elsewhere (a hub, a URL "
            "or another file): a dfkd model file holds its own weights"
        )
    try:
        with torch.device("meta"):  # sized before anything is allocated: crafted arguments could ask for gigabytes
            n_values = sum(parameter.numel() for parameter in create_model(name, **kwargs).state_dict().values())
        model = None if n_values > _tensor_values_in(header) else create_model(name, **kwargs)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: cannot rebuild {name!r} with {kwargs}: {error}") from error
    if model is None:
        raise ModelFileError(
            f"{path}: {name!r} with {kwargs} has {n_values:,} weights, more than the file holds: the card's "
            "architecture arguments were changed"
        )
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False, device="cpu")
    except RuntimeError as error:  # shape mismatches
        raise ModelFileError(f"{path}: weights do not fit {name!r}: {error}") from error
    except Exception as error:  # SafetensorError and friends for damaged data
        raise ModelFileError(f"{path}: unreadable safetensors data ({type(error).__name__}: {error})") from error
    if missing or unexpected:
        raise ModelFileError(mismatch_message(str(path), missing, unexpected))
    expected = card.architecture.digest
    if expected is not None and expected != (actual := architecture_digest(model)):
        raise ModelFileError(
            f"{path}: the weights were saved from another network than {name!r} with {kwargs} builds "
            f"(architecture digest {expected[:12]}… in the card, {actual[:12]}… for {name!r}); the card's "
            "architecture name or arguments were changed"
        )
    model.dfkd_preprocessing = card.preprocessing.model_dump(mode="json")  # all of it: scaled_decode too
    model.dfkd_card = card
    model.to(device).eval()
    logger.info("loaded %s from %s", name, path)
    return model, card
