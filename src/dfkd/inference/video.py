"""Videos: sample frames at a fixed rate, score each frame's faces, and aggregate a video verdict.

Video verdict: the video's ``fake_prob`` is the **mean of the most fake quarter of its scored frames**
(``top_fraction=0.25``, at least one frame). A face swap often shows in only part of a clip, so a plain mean would
dilute it, while the single maximum would let one bad frame decide. Frames where the face detector found a face are
the scored frames; only when no frame has a face are the whole frames scored (status ``"no_face"``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from dfkd.inference.detector import Detector

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
DEFAULT_SAMPLE_FPS = 2.0
DEFAULT_TOP_FRACTION = 0.25
_FALLBACK_FPS = 25.0


# Decoded frames held at once: a 4K frame is 25 MB of RGB, so --batch-size 200 held 5 GB. The face crops of these
# frames still go to the model in batches of up to --batch-size.
MAX_FRAMES_PER_BATCH = 8


class VideoReadError(Exception):
    """A video could not be opened or decoded."""


def opencv_name(path: str | os.PathLike[str]) -> str:
    """``path`` as OpenCV may be handed it.

    Raises:
        VideoReadError: the name is not valid UTF-8 (``caf\\xe9.mp4``), which crashes OpenCV's video reader outright
            (a segmentation fault that would end the whole run).
    """
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        reason = "the file name is not valid UTF-8, which OpenCV cannot open: rename it"
        raise VideoReadError(f"{shown}: {reason}") from None
    return name


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has a video extension (any case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def native_fps(capture: Any) -> float:
    """The stream's frame rate, or 25 when the container does not say (or says nonsense)."""
    import cv2

    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else _FALLBACK_FPS


def iter_video_frames(
    path: str | os.PathLike[str], *, sample_fps: float = DEFAULT_SAMPLE_FPS, max_frames: int | None = None
) -> Iterator[tuple[int, float, Image.Image]]:
    """Yield (frame index, time in seconds, RGB frame) about ``sample_fps`` times per second of video.

    Skipped frames are only grabbed, not decoded. ``sample_fps <= 0`` yields every frame.

    Raises:
        VideoReadError: the file cannot be opened or has no decodable frame.
    """
    import cv2

    if not Path(path).is_file():
        raise VideoReadError(f"{path}: file not found")
    capture = cv2.VideoCapture(opencv_name(path))
    if not capture.isOpened():
        raise VideoReadError(f"{path}: cannot open as a video")
    try:
        fps = native_fps(capture)
        step = max(1, round(fps / sample_fps)) if sample_fps > 0 else 1
        index = yielded = 0
        while max_frames is None or yielded < max_frames:
            if index % step:
                if not capture.grab():
                    break
            else:
                ok, frame = capture.read()
                if not ok:
                    break
                yielded += 1
                yield index, index / fps, Image.fromarray(frame[:, :, ::-1].copy())
            index += 1
        if yielded == 0:
            raise VideoReadError(f"{path}: no decodable frame")
    finally:
        capture.release()


def aggregate_frames(frame_probs: Sequence[float], top_fraction: float = DEFAULT_TOP_FRACTION) -> float:
    """Mean of the ``top_fraction`` highest frame probabilities (at least one)."""
    if not frame_probs:
        raise ValueError("no frame probabilities to aggregate")
    count = max(1, math.ceil(top_fraction * len(frame_probs)))
    top = sorted(frame_probs, reverse=True)[:count]
    return float(sum(top) / len(top))


def predict_video(
    detector: Detector,
    path: str | os.PathLike[str],
    *,
    sample_fps: float = DEFAULT_SAMPLE_FPS,
    max_frames: int | None = None,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    faces: str | None = None,
) -> dict[str, Any]:
    """Score a video: the Detector's result keys plus ``kind="video"``, ``frames`` and the aggregation used.

    ``faces`` of the video result are those of its most fake frame; every frame's faces are in ``frames``.
    """
    result = detector.result_template(str(path), kind="video")
    result.update(frames=[], n_frames=0, sample_fps=sample_fps, aggregation=f"mean of top {top_fraction:.0%} frames")
    frames = result["frames"]
    try:
        pending: list[tuple[int, float, Image.Image]] = []
        per_batch = min(detector.batch_size, MAX_FRAMES_PER_BATCH)
        for frame in iter_video_frames(path, sample_fps=sample_fps, max_frames=max_frames):
            pending.append(frame)
            if len(pending) >= per_batch:
                frames.extend(_score_frames(detector, pending, faces))
                pending = []
        frames.extend(_score_frames(detector, pending, faces))
    except VideoReadError as error:
        result.update(status="error", error=str(error).split(": ", 1)[-1])
        return result
    result["n_frames"] = len(frames)
    result["width"], result["height"] = frames[0]["width"], frames[0]["height"]
    scored = [frame for frame in frames if frame["status"] == "ok"]
    if not scored:
        scored = [frame for frame in frames if frame["status"] == "no_face"]
        result["status"] = "no_face" if scored else "error"
    if not scored:
        result["error"] = "no frame could be scored"
        return result
    result["fake_prob"] = aggregate_frames([frame["fake_prob"] for frame in scored], top_fraction)
    result["label"] = detector.label_of(result["fake_prob"])
    result["faces"] = max(scored, key=lambda frame: frame["fake_prob"])["faces"]
    return result


def _score_frames(
    detector: Detector, frames: list[tuple[int, float, Image.Image]], faces: str | None
) -> list[dict[str, Any]]:
    if not frames:
        return []
    records = detector.predict([image for _, _, image in frames], faces=faces)
    for (index, time_s, _), record in zip(frames, records, strict=True):
        record.update(input=f"frame {index}", index=index, time_s=round(time_s, 3))
        record.pop("threshold", None)
        record.pop("kind", None)
    return records
