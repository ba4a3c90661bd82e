"""Builders for the real-data command tests: a face photo, a blank image and tiny two-source datasets."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.conftest import write_easy_dataset

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
    return write_easy_dataset(root, per_split, size, fake_brighter=fake_brighter, seed=seed + 1)
