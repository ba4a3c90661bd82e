"""Detection over paths: files and folders (recursive) of images and videos, with a progress bar."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfkd.data.images import is_image_path
from dfkd.inference.video import DEFAULT_SAMPLE_FPS, is_video_path, predict_video
from dfkd.utils import track

if TYPE_CHECKING:
    from dfkd.inference.detector import Detector

logger = logging.getLogger(__name__)


@dataclass
class InputItem:
    """One thing to score: an image or a video file, or a path that cannot be used (with the reason)."""

    path: str
    kind: str  # "image", "video" or "error"
    reason: str | None = None


@dataclass
class CollectedInputs:
    """The items found under the given paths, and how many other files in folders were ignored."""

    items: list[InputItem] = field(default_factory=list)
    ignored: int = 0


def collect_inputs(paths: Sequence[str | os.PathLike[str]]) -> CollectedInputs:
    """Expand paths: folders recursively (images and videos by extension, sorted), files as given.

    A named file that is not a video is treated as an image, so a wrong or broken file is reported, not skipped.
    """
    collected = CollectedInputs()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if is_video_path(child):
                    collected.items.append(InputItem(str(child), "video"))
                elif is_image_path(child):
                    collected.items.append(InputItem(str(child), "image"))
                else:
                    collected.ignored += 1
        elif path.is_file():
            collected.items.append(InputItem(str(path), "video" if is_video_path(path) else "image"))
        else:
            collected.items.append(InputItem(str(path), "error", "not found"))
    return collected


def detect_paths(
    detector: Detector,
    paths: Sequence[str | os.PathLike[str]],
    *,
    faces: str | None = None,
    sample_fps: float = DEFAULT_SAMPLE_FPS,
    max_frames: int | None = None,
) -> tuple[list[dict[str, Any]], CollectedInputs]:
    """Score every image and video under ``paths``; one result per item, in the collected order."""
    collected = collect_inputs(paths)
    results: list[dict[str, Any] | None] = [None] * len(collected.items)
    image_positions = [i for i, item in enumerate(collected.items) if item.kind == "image"]
    chunks = [image_positions[i : i + detector.batch_size] for i in range(0, len(image_positions), detector.batch_size)]
    videos = [i for i, item in enumerate(collected.items) if item.kind == "video"]
    progress = [("images", chunk) for chunk in chunks] + [("video", [i]) for i in videos]
    for kind, positions in track(progress, total=len(progress), description="detecting"):
        if kind == "images":
            chunk_results = detector.predict([collected.items[i].path for i in positions], faces=faces)
        else:
            path = collected.items[positions[0]].path
            chunk_results = [predict_video(detector, path, sample_fps=sample_fps, max_frames=max_frames, faces=faces)]
        for position, result in zip(positions, chunk_results, strict=True):
            results[position] = result
    for position, item in enumerate(collected.items):
        if item.kind == "error":
            result = detector.result_template(item.path)
            result.update(status="error", error=item.reason)
            results[position] = result
    return [result for result in results if result is not None], collected
