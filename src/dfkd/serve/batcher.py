"""Micro-batching: one worker thread gathers images from concurrent requests and scores them in one ``predict``.

A request puts one job per image (encoded bytes, decoded only when the worker scores them) on a queue and awaits
their futures. The worker takes the first job and everything already queued (up to ``max_batch``), groups them by
options (faces mode, explain) and calls ``detector.predict`` once per group (its pipeline decodes the bytes on its
threads, at the size the model needs). While it predicts, new jobs queue up and form the next batch, so under load
batches fill without waiting.

The window is adaptive: the worker waits (up to ``window_s``) for more jobs only while other requests are on their
way, that is inside ``arriving()`` (reading their upload, checking headers). A lone request is never held back, and a
burst of concurrent requests is gathered into one call. Jobs whose request has gone (timeout, client left) are
skipped.

Admission is bounded: ``submit`` refuses a whole request (``QueueFull``, answered 503 with ``Retry-After``) when its
images would take the jobs queued or being scored past ``max_queue``, or their decoded pixels past ``max_pixels``;
both are released as the worker finishes each batch. After a batch, once the queue is empty and enough pixels were
decoded since, the worker hands freed heap back to the system (``release_memory``: glibc's ``malloc_trim``), so the
resident memory falls back after a burst.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import ctypes.util
import functools
import io
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

logger = logging.getLogger(__name__)

# Decoded pixels scored since the last ``release_memory`` that make one worth its few milliseconds.
TRIM_AFTER_PIXELS = 4_000_000


class QueueFull(Exception):
    """A request was refused because the worker has too much queued; ``retry_after_s`` estimates when to retry."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, looked up once (``find_library`` may run ``ldconfig``); None where there is none."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory() -> bool:
    """Return the heap's free memory to the system (glibc ``malloc_trim``); False where there is no such call."""
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))


@dataclass
class _Job:
    name: str
    source: Image.Image | bytes  # encoded bytes are decoded by the detector's pipeline, at the size it needs
    faces: str
    explain: bool
    future: asyncio.Future[dict[str, Any]]
    loop: asyncio.AbstractEventLoop
    pixels: int = 0  # decoded pixels counted against the budget until the job is done


@dataclass
class BatchStats:
    """Counters of the worker's work, for ``/healthz`` and tests."""

    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    skipped: int = 0
    rejected: int = 0
    trims: int = 0
    busy_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        with self.lock:
            return {
                "batches": self.batches,
                "images": self.images,
                "largest_batch": self.largest_batch,
                "skipped": self.skipped,
                "rejected": self.rejected,
                "trims": self.trims,
                "busy_s": round(self.busy_s, 3),
            }


def png_base64(image: Image.Image) -> str:
    """An image as base64-encoded PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _settle(future: asyncio.Future[dict[str, Any]], result: dict[str, Any] | None, error: BaseException | None) -> None:
    if future.done():  # cancelled: the request timed out or its client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class MicroBatcher:
    """Score images from concurrent requests in shared ``detector.predict`` calls on one worker thread."""

    def __init__(
        self,
        detector: Any,
        *,
        window_s: float,
        max_batch: int,
        max_queue: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if window_s < 0:
            raise ValueError(f"the batch window must not be negative, got {window_s}")
        self.detector = detector
        self.window_s = window_s
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._arriving = 0
        self._arriving_lock = threading.Lock()
        self.max_queue = max_queue
        self.max_pixels = max_pixels
        self._in_flight = [0, 0]  # jobs and decoded pixels queued or being scored
        self._budget_lock = threading.Lock()
        self._pixels_since_trim = 0

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="dfkd-serve-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish the queued jobs and end."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def queued(self) -> int:
        """Jobs waiting for the worker."""
        return self._queue.qsize()

    @property
    def in_flight(self) -> tuple[int, int]:
        """Jobs and decoded pixels queued or being scored."""
        with self._budget_lock:
            return self._in_flight[0], self._in_flight[1]

    def _admit(self, n_jobs: int, pixels: int) -> None:
        """Count a request's jobs and pixels in, or raise ``QueueFull`` (nothing counted) when they do not fit."""
        with self._budget_lock:
            jobs_now, pixels_now = self._in_flight
            if self.max_queue is not None and jobs_now + n_jobs > self.max_queue:
                reason = f"{jobs_now} images are queued (the limit is {self.max_queue})"
            elif self.max_pixels is not None and pixels_now + pixels > self.max_pixels:
                reason = f"{pixels_now:,} decoded pixels are queued (the limit is {self.max_pixels:,})"
            else:
                self._in_flight = [jobs_now + n_jobs, pixels_now + pixels]
                return
        with self.stats.lock:
            self.stats.rejected += 1
            per_image = self.stats.busy_s / self.stats.images if self.stats.images else 0.1
        raise QueueFull(f"server busy: {reason}", retry_after_s=max(1, min(60, math.ceil(per_image * jobs_now))))

    def _release(self, jobs: Sequence[_Job]) -> None:
        pixels = sum(job.pixels for job in jobs)
        with self._budget_lock:
            self._in_flight = [self._in_flight[0] - len(jobs), self._in_flight[1] - pixels]
        self._pixels_since_trim += pixels
        if self._pixels_since_trim >= TRIM_AFTER_PIXELS and self._queue.empty():
            self._pixels_since_trim = 0
            if release_memory():
                with self.stats.lock:
                    self.stats.trims += 1

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request on its way to ``submit`` (reading, decoding), so that the worker waits a little for it."""
        with self._arriving_lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._arriving_lock:
                self._arriving -= 1

    def submit(
        self,
        images: Sequence[tuple[str, Image.Image | bytes]],
        *,
        faces: str,
        explain: bool = False,
        pixels: Sequence[int] | None = None,
    ) -> list[asyncio.Future[dict[str, Any]]]:
        """Queue ``(name, image or encoded bytes)`` pairs; the futures resolve to their results (call from the event
        loop). Bytes are decoded when the worker takes them, by the detector's pipeline at the size it needs.

        ``pixels`` are the images' decoded pixel counts (default: a PIL image's size, 0 for bytes).

        Raises:
            QueueFull: the images do not fit in ``max_queue`` or their pixels in ``max_pixels``; none was queued.
        """
        if not self.running:
            raise RuntimeError("the batch worker is not running")
        if pixels is None:
            pixels = [image.width * image.height if isinstance(image, Image.Image) else 0 for _, image in images]
        self._admit(len(images), sum(pixels))
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[dict[str, Any]]] = []
        for (name, image), count in zip(images, pixels, strict=True):
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            futures.append(future)
            self._queue.put(_Job(name, image, faces, explain, future, loop, count))
        return futures

    @staticmethod
    async def collect(futures: list[asyncio.Future[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The results of ``submit``'s futures, in order; on cancellation the worker skips what is left."""
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for future in futures:
                future.cancel()

    async def predict(
        self, images: Sequence[tuple[str, Image.Image | bytes]], *, faces: str, explain: bool = False
    ) -> list[dict[str, Any]]:
        """Detector results for ``(name, image)`` pairs, in order; ``input`` is each name.

        With ``explain``, results that were scored carry ``explain_png`` (base64 PNG Grad-CAM overlay) or, where the
        detector cannot explain (ONNX), ``explain_png: None`` and an ``explain_note`` that says why.
        """
        return await self.collect(self.submit(images, faces=faces, explain=explain))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._gather(first)
            try:
                self._process(batch)
            except Exception as error:  # never let one bad batch end the worker
                logger.exception("batch of %d failed", len(batch))
                for job in batch:
                    self._deliver(job, None, error)
            finally:
                self._release(batch)
            if stopping:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The next batch: ``first``, what is queued, and what arrives within the window while requests are on their
        way; and whether the stop sentinel was seen."""
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._arriving == 0 or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _process(self, batch: list[_Job]) -> None:
        groups: dict[tuple[str, bool], list[_Job]] = {}
        for job in batch:
            groups.setdefault((job.faces, job.explain), []).append(job)
        for (faces, explain), jobs in groups.items():
            live = [job for job in jobs if not job.future.done()]
            with self.stats.lock:
                self.stats.skipped += len(jobs) - len(live)
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = self.detector.predict([job.source for job in live], faces=faces)
            except Exception as error:
                logger.exception("predict failed on a batch of %d", len(live))
                for job in live:
                    self._deliver(job, None, error)
                continue
            for job, result in zip(live, results, strict=True):
                result["input"] = job.name
                if explain:
                    self._explain(job, result)
                self._deliver(job, result, None)
            with self.stats.lock:
                self.stats.batches += 1
                self.stats.images += len(live)
                self.stats.largest_batch = max(self.stats.largest_batch, len(live))
                self.stats.busy_s += time.perf_counter() - started
            logger.debug("scored a batch of %d (faces=%s, explain=%s)", len(live), faces, explain)

    def _explain(self, job: _Job, result: dict[str, Any]) -> None:
        result["explain_png"] = None
        if result.get("status") == "error" or job.future.done():
            return
        try:
            overlay = self.detector.explain(job.source, faces=job.faces)
        except NotImplementedError as error:
            result["explain_note"] = str(error)
        except Exception as error:  # an explanation failing must not lose the verdict
            logger.warning("%s: explanation failed: %s", job.name, error)
            result["explain_note"] = f"explanation failed ({type(error).__name__}: {error})"
        else:
            result["explain_png"] = png_base64(overlay)

    @staticmethod
    def _deliver(job: _Job, result: dict[str, Any] | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop has closed (shutdown): nobody is waiting
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)
