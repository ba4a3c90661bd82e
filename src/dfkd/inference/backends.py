"""Inference backends: a dfkd model file on PyTorch, or an exported ONNX file on onnxruntime; both map [B, 3, S, S]
float32 arrays to fake logits [B]."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dfkd.inference.preprocess import check_preprocessing

logger = logging.getLogger(__name__)

ONNX_METADATA_KEY = "dfkd"
ONNX_INPUT_NAME = "images"
ONNX_OUTPUT_NAME = "fake_logits"


class Backend(Protocol):
    """What the Detector needs from a model runtime."""

    kind: str
    metadata: dict[str, Any]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Fake logits [B] of a preprocessed batch [B, 3, S, S]."""
        ...


def _check_record(record: Any, path: str) -> dict[str, Any]:
    from dfkd.models.weights import ModelFileError

    if not isinstance(record, dict) or record.get("format") != "dfkd-model":
        raise ModelFileError(f"{path}: the '{ONNX_METADATA_KEY}' metadata is not a dfkd model record")
    try:
        check_preprocessing(record.get("preprocessing"), path)
    except ValueError as error:
        raise ModelFileError(str(error)) from None
    return record


class TorchBackend:
    """A dfkd ``.safetensors`` model on PyTorch; the model lock serialises forwards with Grad-CAM's hooks."""

    kind = "torch"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from dfkd.models import load_model

        self.model, record = load_model(path, device=device)
        self.metadata = _check_record(record, str(path))
        self.device = device
        self.lock = threading.RLock()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Fake logits [B] of a preprocessed batch [B, 3, S, S]."""
        import torch

        with self.lock, torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(inputs).float().cpu().numpy().reshape(-1)


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The dfkd record embedded in an exported ONNX file (``metadata_props`` key ``dfkd``), without running it."""
    import onnxruntime as ort

    from dfkd.models.weights import ModelFileError

    session = _open_session(path, ort)
    return _record_from_session(session, str(path), ModelFileError)


def _open_session(path: str | Path, ort: Any, threads: int | None = None) -> Any:
    from dfkd.models.weights import ModelFileError

    if not Path(path).is_file():
        raise ModelFileError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise ModelFileError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {error})") from None


def _record_from_session(session: Any, path: str, error_type: type[Exception]) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    if raw is None:
        raise error_type(f"{path}: an ONNX file without dfkd metadata (export it with `dfkd export`)")
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise error_type(f"{path}: its dfkd metadata is not JSON ({error})") from None
    return _check_record(record, path)


class OnnxBackend:
    """An exported ONNX model (fp32 or INT8) on onnxruntime's CPU provider; ``run`` is thread-safe."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        from dfkd.models.weights import ModelFileError

        self.session = _open_session(path, ort, threads)
        self.metadata = _record_from_session(self.session, str(path), ModelFileError)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Fake logits [B] of a preprocessed batch [B, 3, S, S]."""
        (outputs,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(outputs, dtype=np.float32).reshape(-1)


def is_onnx_file(path: str | Path) -> bool:
    """True for an ONNX file: by suffix, else by not being a safetensors file (whose header is JSON)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    if path.suffix.lower() == ".safetensors" or not path.is_file():
        return False
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] != b"{"


def load_backend(path: str | Path, *, device: str = "cpu") -> TorchBackend | OnnxBackend:
    """Open a dfkd model file (PyTorch) or an exported ONNX file (onnxruntime, CPU only)."""
    if is_onnx_file(path):
        if device != "cpu":
            logger.warning("ONNX models run on onnxruntime's CPU provider; ignoring device=%s", device)
        return OnnxBackend(path)
    return TorchBackend(path, device=device)
