"""Live detection on a camera or stream: always score the newest frame, drop the ones that came meanwhile.

A reader thread keeps only the latest frame, so a slow model skips frames instead of falling behind; the achieved
processing rate is reported as ``fps``. Results go to an overlay window when there is a display, else to a callback
(the CLI prints one JSON line per scored frame).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dfkd.inference.video import VideoReadError, native_fps, opencv_name

if TYPE_CHECKING:
    from dfkd.inference.detector import Detector

logger = logging.getLogger(__name__)
WINDOW_NAME = "dfkd detect"


class LatestFrameReader:
    """Reads a capture on a background thread and keeps only the newest frame."""

    def __init__(self, capture: Any, *, pace_fps: float | None = None) -> None:
        self._capture = capture
        self._pace = 1.0 / pace_fps if pace_fps else 0.0
        self._condition = threading.Condition()
        self._frame: np.ndarray | None = None
        self._sequence = 0
        self._taken = 0
        self._ended = False
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="dfkd-frame-reader", daemon=True)

    def start(self) -> LatestFrameReader:
        """Start reading."""
        self._thread.start()
        return self

    def _run(self) -> None:
        next_time = time.perf_counter()
        while not self._stop.is_set():
            ok, frame = self._capture.read()
            with self._condition:
                if not ok:
                    self._ended = True
                    self._condition.notify_all()
                    return
                if self._frame is not None and self._sequence > self._taken:
                    self.dropped += 1
                self._frame, self._sequence = frame, self._sequence + 1
                self._condition.notify_all()
            if self._pace:  # a file played as a stream: deliver frames at its own rate, like a camera
                next_time += self._pace
                time.sleep(max(0.0, next_time - time.perf_counter()))

    def latest(self, timeout: float = 5.0) -> tuple[int, np.ndarray] | None:
        """The newest unseen frame (sequence number, BGR array), waiting for one; None once the stream ended."""
        with self._condition:
            ready = self._condition.wait_for(lambda: self._sequence > self._taken or self._ended, timeout=timeout)
            if not ready or self._sequence <= self._taken:
                return None
            self._taken = self._sequence
            return self._sequence, self._frame  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop reading and release the capture."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._capture.release()


def open_capture(source: int | str) -> tuple[Any, float | None]:
    """Open a camera index or a stream URL / file; returns (capture, pacing rate for files or None).

    Raises:
        RuntimeError: the source cannot be opened.
    """
    import cv2

    if isinstance(source, str):
        try:
            source = opencv_name(source)
        except VideoReadError as error:
            raise RuntimeError(str(error)) from None
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise RuntimeError(f"cannot open video source {source!r}")
    is_file = isinstance(source, str) and Path(source).is_file()
    return capture, (native_fps(capture) if is_file else None)


def gui_available() -> bool:
    """Whether this OpenCV build can open windows (the headless wheel cannot)."""
    import cv2

    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        cv2.destroyWindow(WINDOW_NAME)
    except cv2.error:
        return False
    return True


def draw_overlay(frame: np.ndarray, result: dict[str, Any], threshold: float, fps: float) -> np.ndarray:
    """Boxes with fake probabilities (red: fake, green: real) and the achieved FPS, drawn on a BGR frame."""
    import cv2

    canvas = frame.copy()
    for face in result.get("faces", []):
        x0, y0, x1, y1 = face["box"]
        fake = (face.get("fake_prob") or 0.0) >= threshold
        colour = (0, 0, 255) if fake else (0, 200, 0)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
        cv2.putText(canvas, f"fake {face['fake_prob']:.2f}", (x0, max(15, y0 - 6)), 0, 0.6, colour, 2)
    summary = f"{fps:.1f} FPS  {result['status']}"
    if result.get("fake_prob") is not None:
        summary += f"  fake {result['fake_prob']:.2f}"
    cv2.putText(canvas, summary, (10, 25), 0, 0.7, (255, 255, 255), 2)
    return canvas


def run_live(
    detector: Detector,
    source: int | str,
    *,
    show: bool = False,
    emit: Callable[[dict[str, Any]], None] | None = None,
    max_frames: int | None = None,
    faces: str | None = None,
) -> dict[str, Any]:
    """Score a live source until it ends, ``max_frames`` are scored, or the window is closed (q / Esc).

    Each scored frame's record (frame sequence number, seconds since start, achieved fps, frames dropped so far,
    and the Detector result) goes to ``emit``; returns a summary.
    """
    import cv2

    capture, pace = open_capture(source)
    detector.predict([Image.new("RGB", (64, 64))], faces=faces)  # warm up before frames start to count
    reader = LatestFrameReader(capture, pace_fps=pace).start()
    start = last = time.perf_counter()
    fps = 0.0
    scored = 0
    try:
        while max_frames is None or scored < max_frames:
            latest = reader.latest()
            if latest is None:
                break
            sequence, frame = latest
            result = detector.predict([Image.fromarray(frame[:, :, ::-1])], faces=faces)[0]
            now = time.perf_counter()
            fps = 1.0 / max(now - last, 1e-6) if scored == 0 else 0.8 * fps + 0.2 / max(now - last, 1e-6)
            last = now
            scored += 1
            result.update(input=f"frame {sequence}")
            record = {"frame": sequence, "time_s": round(now - start, 3), "fps": round(fps, 2)}
            record |= {"dropped": reader.dropped, **result}
            if emit is not None:
                emit(record)
            if show:
                cv2.imshow(WINDOW_NAME, draw_overlay(frame, result, detector.threshold, fps))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
    finally:
        reader.stop()
        if show:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - start
    return {
        "scored": scored,
        "dropped": reader.dropped,
        "seconds": round(elapsed, 3),
        "fps": round(scored / elapsed, 2) if elapsed > 0 else 0.0,
    }
