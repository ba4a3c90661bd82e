"""Detection over paths: files and folders (recursive) of images and videos, with a progress bar."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dfkd import utils
from dfkd.data.images import is_image_path, unreadable_reason
from dfkd.inference.video import DEFAULT_SAMPLE_FPS, is_video_path, predict_video

if TYPE_CHECKING:
    from dfkd.inference.detector import Detector

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class InputItem:
    """One thing to score: an image or a video file, or a path that cannot be used (with the reason)."""

    path: str
    kind: str  # "image", "video" or "error"
    reason: str | None = None


@dataclass
class CollectedInputs:
    """The items found under the given paths, the other files in folders (ignored), the folders that cannot be read."""

    items: list[InputItem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unreadable_folders: list[InputItem] = field(default_factory=list)  # kind "folder", with the reason


def _missing_reason(path: Path) -> str:
    return "broken link: its target does not exist" if path.is_symlink() else "not found"


def _file_item(path: Path, kind: str) -> InputItem:
    """An image or video item, or an error item when the file may not be read.

    Checked here so that a file we may not read is reported as such, not as an undecodable image or video.
    """
    if not path.exists():  # os.access fails for these too, and would blame permissions
        return InputItem(str(path), "error", _missing_reason(path))
    if not os.access(path, os.R_OK):
        return InputItem(str(path), "error", "cannot read: permission denied")
    return InputItem(str(path), kind)


def _walk_files(root: Path, unreadable_folders: list[InputItem]) -> Iterator[Path]:
    """Files under ``root`` (recursive, sorted); a folder that cannot be listed is skipped, logged and recorded."""

    def skipped(error: OSError) -> None:
        logger.warning("skipped unreadable folder %s (%s)", error.filename, error.strerror or error)
        unreadable_folders.append(InputItem(str(error.filename), "folder", unreadable_reason(error)))

    for folder, subfolders, files in os.walk(root, onerror=skipped, followlinks=False):
        subfolders.sort()
        for name in sorted(files):
            yield Path(folder) / name


def _folder_item(path: Path) -> InputItem | None:
    """The image or video item of a file found in a folder, or None for a file of another kind."""
    if is_video_path(path):
        return _file_item(path, "video")
    if is_image_path(path):
        return _file_item(path, "image")
    return None


def collect_inputs(paths: Sequence[str | os.PathLike[str]]) -> CollectedInputs:
    """Expand paths: folders recursively (images and videos by extension, sorted), files as given.

    A named file that is not a video is treated as an image, so a wrong or broken file is reported, not skipped; a
    path that cannot be read (permissions, a symbolic link loop) is an error item saying why; a folder that cannot be
    listed is skipped with a warning naming it and recorded in ``unreadable_folders``.
    """
    collected = CollectedInputs()
    for raw in paths:
        path = Path(raw)
        try:
            path.stat()
        except FileNotFoundError:
            collected.items.append(InputItem(str(path), "error", _missing_reason(path)))
            continue
        except OSError as error:  # ELOOP, EACCES on a parent folder, ENAMETOOLONG …
            collected.items.append(InputItem(str(path), "error", unreadable_reason(error)))
            continue
        if path.is_dir():
            for child in sorted(_walk_files(path, collected.unreadable_folders)):
                item = _folder_item(child)
                if item is None:
                    collected.ignored.append(str(child))
                else:
                    collected.items.append(item)
        elif path.is_file():
            collected.items.append(_file_item(path, "video" if is_video_path(path) else "image"))
        else:
            collected.items.append(InputItem(str(path), "error", "not a regular file"))
    return collected


def track_rate(iterable: Iterable[T], *, total: int, description: str, unit: str) -> Iterator[T]:
    """Iterate with a rich progress bar that shows the rate (``unit``/s) when progress is enabled."""
    if not utils._PROGRESS_ENABLED:  # the CLI's switch for rich progress bars (dfkd.utils.enable_progress)
        yield from iterable
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    rate = TextColumn("{task.fields[rate]}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn())
    with Progress(*columns, rate, TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")
        started = time.perf_counter()
        for done, item in enumerate(iterable, start=1):
            yield item
            speed = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=f"{speed:.1f} {unit}/s")


def detect_paths(
    detector: Detector,
    paths: Sequence[str | os.PathLike[str]],
    *,
    faces: str | None = None,
    sample_fps: float = DEFAULT_SAMPLE_FPS,
    max_frames: int | None = None,
) -> tuple[list[dict[str, Any]], CollectedInputs]:
    """Score every image and video under ``paths``; one result per item, in the collected order.

    Images stream through the detector's pipeline (decoding and face detection overlapped with the model), so the
    memory in use does not grow with the number of images; the progress bar shows images per second.
    """
    collected = collect_inputs(paths)
    results: list[dict[str, Any] | None] = [None] * len(collected.items)
    image_positions = [i for i, item in enumerate(collected.items) if item.kind == "image"]
    image_paths = (collected.items[i].path for i in image_positions)
    scored = detector.stream(image_paths, faces=faces)
    for position, result in zip(
        image_positions, track_rate(scored, total=len(image_positions), description="images", unit="img"), strict=True
    ):
        results[position] = result
    videos = [i for i, item in enumerate(collected.items) if item.kind == "video"]
    for position in track_rate(videos, total=len(videos), description="videos", unit="video"):
        path = collected.items[position].path
        results[position] = predict_video(detector, path, sample_fps=sample_fps, max_frames=max_frames, faces=faces)
    for position, item in enumerate(collected.items):
        if item.kind == "error":
            result = detector.result_template(item.path)
            result.update(status="error", error=item.reason)
            results[position] = result
    for folder in collected.unreadable_folders:  # in the report too, not only the log: its files were not scored
        result = detector.result_template(folder.path, kind="folder")
        result.update(status="error", error=folder.reason)
        results.append(result)
    return [result for result in results if result is not None], collected
