"""Builders for the real-data command tests: a face photo, a blank image and tiny two-source datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[3] / "shared"
YUNET = SHARED / "models" / "face_detection_yunet.onnx"
# The astronaut's face as the detectors box it (within a few pixels).
ASTRONAUT_BOX = (179, 60, 269, 177)


def astronaut() -> Image.Image:
    """scikit-image's astronaut photo: one real face, 512x512."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def blank(size: int = 160) -> Image.Image:
    """A flat grey image: no face."""
    return Image.new("RGB", (size, size), (128, 128, 128))


def iou(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def write_source(root: Path, *, fake_brighter: bool, seed: int, per_split: dict[str, int], size: int = 32) -> Path:
    """``root/{train,val,test}/{real,fake}/*.png`` whose classes differ in brightness (direction per source)."""
    counter = seed * 10_000
    bases = {"real": 70, "fake": 170} if fake_brighter else {"real": 170, "fake": 70}
    for split, n in per_split.items():
        for label, base in bases.items():
            for i in range(n):
                counter += 1
                rng = np.random.default_rng(counter)
                array = np.clip(base + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
                path = root / split / label / f"{label}_{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
    return root
