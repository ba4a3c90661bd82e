"""Shared builders for the serve tests: a tiny model file, test images and a real uvicorn server on a free port."""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

PREPROCESSING = {"resize_size": 72, "input_size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
RESULT_KEYS = {"input", "kind", "status", "error", "fake_prob", "label", "threshold", "faces", "width", "height"}
# The astronaut's face as the face detectors box it (within a few pixels).
ASTRONAUT_BOX = (179, 60, 269, 177)


def make_tiny_model(path: Path, seed: int = 0) -> Path:
    """A random resnet8_fast (resize 72, input 64) saved as a dfkd model file; BatchNorm statistics are randomised so
    that the fake probability varies clearly from image to image."""
    from dfkd.models import create_model, save_model

    torch.manual_seed(seed)
    model = create_model("resnet8_fast")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    save_model(model, path, {"preprocessing": PREPROCESSING, "metrics": {"val_auc": 0.5, "accuracy": 0.5}})
    return path


def noise_image(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A random RGB image (no face); the brightness differs by seed so scores differ clearly."""
    rng = np.random.default_rng(seed)
    base = 40 + (seed * 37) % 180
    array = np.clip(base + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    """An image's encoded bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` with almost no pixel data: a decompression-bomb stand-in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def astronaut() -> Image.Image:
    """scikit-image's astronaut photo: one real face, 512x512."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def rss_bytes() -> int:
    """This process's resident memory (psutil when installed, else /proc/self/status)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("cannot read the resident memory here") from None
    return int(psutil.Process(os.getpid()).memory_info().rss)


class LiveServer:
    """A real uvicorn server for an app, in a background thread, on a free 127.0.0.1 port (bound before start);
    ``options`` go to ``uvicorn.Config`` (e.g. ``dfkd.serve.server.uvicorn_options``)."""

    def __init__(self, app: Any, **options: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5, **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.socket.close()
