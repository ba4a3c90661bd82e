"""Images for export checks: user-given check images, seeded manifest samples, and synthetic fallbacks."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dfkd.data.images import ImageLoadError, is_image_path, open_image, to_pil
from dfkd.data.manifest import Manifest, read_manifest
from dfkd.data.scan import Sample
from dfkd.labels import label_id

logger = logging.getLogger(__name__)


def expand_image_paths(sources: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (recursive), sorted within each folder."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths.extend(sorted(p for p in source.rglob("*") if p.is_file() and is_image_path(p)))
        else:
            paths.append(source)
    return paths


def load_check_images(sources: Sequence[str | Path | Image.Image | Manifest], limit: int = 64) -> list[Image.Image]:
    """Readable RGB images from paths, folders, a manifest (read, or a CSV: its val split) or PIL images; at most
    ``limit``."""
    images: list[Image.Image] = []
    paths: list[str | Path] = []
    for source in sources:
        if isinstance(source, Image.Image):
            images.append(to_pil(source))
        elif isinstance(source, Manifest) or str(source).lower().endswith(".csv"):
            manifest = source if isinstance(source, Manifest) else read_manifest(source)
            rows = sample_manifest(manifest, "val", limit)
            images.extend(image for batch, _ in iter_labelled_batches(rows, limit, []) for image in batch)
        else:
            paths.append(source)
    for path in expand_image_paths(paths):
        if len(images) >= limit:
            break
        try:
            images.append(open_image(path))
        except ImageLoadError as error:
            logger.warning("skipping check image %s", error)
    return images[:limit]


def sample_manifest(manifest: Manifest, split: str, n: int | None, *, seed: int = 0) -> list[Sample]:
    """A seeded random sample of ``n`` rows of a manifest split (all of them, shuffled, when ``None``)."""
    samples = list(manifest.split(split))
    random.Random(seed).shuffle(samples)
    return samples if n is None else samples[:n]


def iter_labelled_batches(
    samples: Sequence[Sample], batch_size: int, skipped: list[str]
) -> Iterator[tuple[list[Image.Image], list[int]]]:
    """Batches of (RGB images, labels with fake = 1); unreadable files are logged and appended to ``skipped``."""
    images: list[Image.Image] = []
    labels: list[int] = []
    for sample in samples:
        try:
            images.append(open_image(sample.path))
        except ImageLoadError as error:
            skipped.append(str(error))
            logger.warning("skipping %s", error)
            continue
        labels.append(label_id(sample.label))
        if len(images) == batch_size:
            yield images, labels
            images, labels = [], []
    if images:
        yield images, labels


def synthetic_images(n: int, *, seed: int = 0, size: int = 256) -> list[Image.Image]:
    """Noise, gradients and blobs: a fallback for parity checks when no real image is given."""
    rng = np.random.default_rng(seed)
    images = []
    ramp = np.linspace(0, 255, size)
    for index in range(n):
        if index % 2 == 0:
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            base = np.stack([np.add.outer(ramp, ramp * rng.uniform(0, 1)) % 256] * 3, axis=-1)
            array = np.clip(base * rng.uniform(0.5, 1.0, size=3) + rng.normal(0, 10, base.shape), 0, 255)
        images.append(Image.fromarray(array.astype(np.uint8)))
    return images
