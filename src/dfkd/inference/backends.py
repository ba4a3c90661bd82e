"""Inference backends: a dfkd model file on PyTorch, or an exported ONNX file on onnxruntime; both map [B, 3, S, S]
float32 arrays to fake logits [B]."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from dfkd.card import ModelCard
from dfkd.deploy.onnx_format import open_onnx_session, session_card

logger = logging.getLogger(__name__)


def let_idle_threads_sleep() -> None:
    """Ask OpenMP (PyTorch's CPU threads) to put idle threads to sleep instead of spinning, unless the user chose
    (``OMP_WAIT_POLICY``).

    For processes where threads decode photos and find faces while the model scores: spinning model threads took
    their cores (``idle_model_threads`` in benchmarks/detect_speed.py). Takes effect only before torch
    loads its OpenMP runtime, so the detect and serve commands call it first; it is theirs to set, as it is
    process-wide (a Python program using :class:`~dfkd.inference.detector.Detector` may set the variable itself).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Backend(Protocol):
    """What the Detector needs from a model runtime."""

    kind: str
    card: ModelCard

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Fake logits [B] of a preprocessed batch [B, 3, S, S]."""
        ...


class TorchBackend:
    """A dfkd ``.safetensors`` model on PyTorch; the model lock serialises forwards with Grad-CAM's hooks."""

    kind = "torch"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from dfkd.models import load_model

        self.model, self.card = load_model(path, device=device)
        self.device = device
        self.lock = threading.RLock()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Fake logits [B] of a preprocessed batch [B, 3, S, S]."""
        import torch

        with self.lock, torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(inputs).float().cpu().numpy().reshape(-1)


class OnnxBackend:
    """An exported ONNX model (fp32 or INT8) on onnxruntime's CPU provider; ``run`` is thread-safe."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        # Not spinning between batches: spinning threads took the cores the pipeline's decode and face-detection
        # workers need (``idle_model_threads`` in benchmarks/detect_speed.py).
        self.session = open_onnx_session(path, threads, spin=False)
        self.card = session_card(self.session, str(path))
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


def load_backend(
    path: str | Path | None = None, *, device: str = "cpu", threads: int | None = None
) -> TorchBackend | OnnxBackend:
    """Open a dfkd model file (PyTorch) or an exported ONNX file (onnxruntime, CPU only); ``None``: the bundled
    general detector (:mod:`dfkd.pretrained`).

    ``threads`` caps the runtime's intra-op threads (``torch.set_num_threads`` for PyTorch, process-wide); torch is
    imported only for a PyTorch model.
    """
    if path is None:
        from dfkd.pretrained import default_model_path

        path = default_model_path()
    if is_onnx_file(path):
        if device != "cpu":
            logger.warning("ONNX models run on onnxruntime's CPU provider; ignoring device=%s", device)
        return OnnxBackend(path, threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return TorchBackend(path, device=device)
