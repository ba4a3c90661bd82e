"""The self-describing model file: one `.safetensors` whose metadata says how to rebuild and use the model."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

import dfkd
from dfkd.models.registry import create_model, default_preprocessing, is_known_model, list_models
from dfkd.models.weights import ModelFileError, mismatch_message

logger = logging.getLogger(__name__)

FORMAT_NAME = "dfkd-model"
FORMAT_VERSION = 1
METADATA_KEY = "dfkd"
DEFAULT_LABELS = {"0": "real", "1": "fake"}
DEFAULT_THRESHOLD = 0.5
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


def save_model(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write `model` built by `create_model` to one `.safetensors` file, atomically.

    The file's metadata entry "dfkd" is a JSON record of the architecture (name and kwargs), preprocessing, label
    map (fake = 1), decision threshold, metrics and dfkd version; keys in `metadata` override or extend it.
    """
    architecture = getattr(model, "dfkd_arch", None)
    if not isinstance(architecture, dict) or "name" not in architecture:
        raise ValueError("only models built by dfkd.models.create_model can be saved (no `dfkd_arch` attribute)")
    preprocessing = getattr(model, "dfkd_preprocessing", None) or default_preprocessing(architecture["name"])
    record: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": copy.deepcopy(architecture),
        "role": getattr(model, "dfkd_role", None),
        "preprocessing": copy.deepcopy(preprocessing),
        "labels": dict(DEFAULT_LABELS),
        "threshold": DEFAULT_THRESHOLD,
        "metrics": {},
        "dfkd_version": dfkd.__version__,
    }
    record.update(metadata or {})
    try:
        record_json = json.dumps(record)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model metadata must be JSON-serialisable: {error}") from error

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if any(not tensor.is_contiguous() for tensor in model.state_dict().values()):
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # channels-last training weights
    try:
        safetensors.torch.save_model(model, str(temporary), metadata={METADATA_KEY: record_json})
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("saved %s to %s", architecture["name"], path)


def _read_header(path: Path) -> dict[str, Any]:
    """Validate the safetensors framing (8-byte length, JSON header, data size) with messages a user can act on."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
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
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: not a safetensors file (header is not JSON: {error})") from error
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a safetensors file (header is not a JSON object)")
    try:
        data_size = max(
            (int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0
        )
    except (KeyError, TypeError, IndexError, ValueError) as error:
        raise ModelFileError(f"{path}: not a safetensors file (malformed tensor entry: {error!r})") from error
    if file_size < 8 + header_size + data_size:
        raise ModelFileError(f"{path}: truncated file: expected {8 + header_size + data_size} bytes, found {file_size}")
    return header


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    """Read a dfkd model file's metadata record without loading any tensor."""
    path = Path(path)
    header = _read_header(path)
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(f"{path}: not a dfkd model file (a safetensors file without '{METADATA_KEY}' metadata)")
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: not a dfkd model file (its '{METADATA_KEY}' metadata is not JSON)") from error
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a dfkd model file (metadata format is not {FORMAT_NAME!r})")
    version = record.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version!r} is not supported (this dfkd reads <= {FORMAT_VERSION}); "
            "upgrade dfkd"
        )
    return record


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a dfkd model file (nothing unpickled); returns (model in eval mode, metadata)."""
    path = Path(path)
    record = read_model_metadata(path)
    architecture = record.get("architecture")
    if not isinstance(architecture, dict) or not isinstance(architecture.get("name"), str):
        raise ModelFileError(f"{path}: metadata has no architecture name")
    name, kwargs = architecture["name"], architecture.get("kwargs") or {}
    if not is_known_model(name):
        raise ModelFileError(
            f"{path}: unknown architecture {name!r}; known: {', '.join(list_models())} (or 'timm/<timm model name>')"
        )
    try:
        model = create_model(name, **kwargs)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: cannot rebuild {name!r} with {kwargs}: {error}") from error
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False, device="cpu")
    except RuntimeError as error:  # shape mismatches
        raise ModelFileError(f"{path}: weights do not fit {name!r}: {error}") from error
    except Exception as error:  # SafetensorError and friends for damaged data
        raise ModelFileError(f"{path}: unreadable safetensors data ({type(error).__name__}: {error})") from error
    if missing or unexpected:
        raise ModelFileError(mismatch_message(str(path), missing, unexpected))
    if isinstance(record.get("preprocessing"), dict):
        model.dfkd_preprocessing = copy.deepcopy(record["preprocessing"])
    model.dfkd_metadata = record
    model.to(device).eval()
    logger.info("loaded %s from %s", name, path)
    return model, record
