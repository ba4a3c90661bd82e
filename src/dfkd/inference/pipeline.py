"""The detection pipeline: decode at the size needed → find faces → crop → model, overlapped and streaming.

1. **Prepare** (a pool of ``workers`` threads; Pillow's decoders and resizes, OpenCV and onnxruntime release the GIL,
   so threads overlap): decode the input at the size needed (``decode="scaled"``: a JPEG DCT-scaled to the smallest
   size that serves face detection, ≥ ``DETECTION_SIDE`` px on its long side, and the model's view; decoded again
   less scaled when a face is too small in it), find faces, cut the crops and preprocess them into model inputs
   (``preprocess_image``, the eval transform's exact maths). Only those small arrays outlive the worker.
   ``decode="full"`` is the reference path: a full decode, faces cropped from it as ``crop_face`` does.
2. **Score** (the calling thread): model inputs are scored in batches of up to ``batch_size``; a batch
   goes to the model as soon as the next input is not ready yet, so the first result never waits for a full batch.

Results come back in input order. At most ``2 * workers + 64`` inputs are being prepared and at most 64 more wait,
prepared, for their model batch (``2 * workers + 128`` in flight in all), so memory stays the same whatever the
number of inputs or the batch size. ``workers=0`` runs
every stage in the calling thread, one input after another.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from dfkd.data.images import DecodedImage, ImageLoadError, decode_image, to_pil
from dfkd.data.preprocess import preprocess_image
from dfkd.faces.align import align_face, box_landmarks
from dfkd.faces.backends import DEFAULT_MAX_SIDE, FaceBox
from dfkd.faces.detect import crop_face, face_square
from dfkd.inference.video import is_video_path
from dfkd.utils import sigmoid

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DECODE_MODES = ("scaled", "full")
DETECTION_SIDE = DEFAULT_MAX_SIDE  # face detectors see a ≤ 640-px view of a photo anyway
MAX_WINDOW_BATCH = 64  # inputs in flight beyond the workers' own: enough to fill model batches, bounded memory
VIDEO_REASON = "a video: Detector.predict takes images; use dfkd detect or dfkd.inference.video.predict_video"


def default_workers() -> int:
    """Prepare threads by default: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def input_name(item: Any, index: int) -> str:
    """A readable name for one input: its path, a PIL image's file name, or ``image[i]`` / ``array[i]``."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, Image.Image):
        return getattr(item, "filename", "") or f"image[{index}]"
    if isinstance(item, np.ndarray):
        return f"array[{index}]"
    return f"input[{index}]"


def decode_input(item: Any, *, min_short_side: int = 0, min_long_side: int = 0) -> DecodedImage:
    """A path or encoded bytes decoded at the smallest size that keeps the sides asked for (see ``decode_image``);
    a PIL image or HxW(xC) array as it is.

    Raises:
        ImageLoadError: naming the input and the reason.
    """
    if isinstance(item, (str, os.PathLike)) and is_video_path(item):  # Pillow would call it "not an image"
        raise ImageLoadError(item, VIDEO_REASON)
    if isinstance(item, (str, os.PathLike, bytes)):
        return decode_image(item, min_short_side=min_short_side, min_long_side=min_long_side)
    if isinstance(item, (Image.Image, np.ndarray)):
        image = to_pil(item)
        return DecodedImage(image, image.size)
    raise ImageLoadError(None, f"unsupported input type {type(item).__name__} (expected a path, PIL image or array)")


def load_input(item: Any) -> Image.Image:
    """A path, encoded bytes, PIL image or HxW(xC) array as a full-size RGB PIL image.

    Raises:
        ImageLoadError: naming the input and the reason.
    """
    return decode_input(item).image


@dataclass
class Prepared:
    """One input after the prepare stage: its result so far and the model inputs [3, S, S] it is to score."""

    result: dict[str, Any]
    views: list[np.ndarray] = field(default_factory=list)
    slots: list[int | None] = field(default_factory=list)  # per model input: its face's index, or None (whole image)


def box_in_full(box: FaceBox, scale: float, width: int, height: int) -> FaceBox:
    """A box found on a view decoded at ``scale``, in the full image's pixels (clamped to them)."""
    if scale == 1.0:
        return box
    return FaceBox(
        min(width, max(0, math.floor(box.x0 / scale))),
        min(height, max(0, math.floor(box.y0 / scale))),
        min(width, max(0, math.ceil(box.x1 / scale))),
        min(height, max(0, math.ceil(box.y1 / scale))),
        box.score,
        None if box.landmarks is None else tuple((x / scale, y / scale) for x, y in box.landmarks),
    )


def crop_decoded(
    decoded: DecodedImage, box: FaceBox, *, margin: float, side: int, crop_size: int | None, align: bool = False
) -> Image.Image:
    """The face crop of a full-image ``box`` cut from a decoded view.

    At full scale it is exactly ``crop_face``. From a reduced view, the same square (in full-image pixels) is
    resampled straight to ``crop_size`` (or ``side``, the model's resize side, when the card has no crop size); an
    aligned crop is warped from the view with the box's landmarks scaled to it.
    """
    if decoded.scale == 1.0:
        return crop_face(decoded.image, box, margin=margin, size=crop_size, align=align)
    width, height = decoded.full_size
    scale, image = decoded.scale, decoded.image
    if align:
        return align_face(image, box_landmarks(box) * scale, margin=margin, size=crop_size or side)[0]
    x0, y0, x1, y1 = face_square(box, width, height, margin=margin)
    out = crop_size or side
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:  # a face longer than the shorter side: the black overhang
        region = (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))
        return image.crop(region).resize((out, out), Image.BILINEAR)
    region = (x0 * scale, y0 * scale, min(x1 * scale, image.width), min(y1 * scale, image.height))
    return image.resize((out, out), Image.BILINEAR, box=region)


def prepare_input(detector: Any, indexed: tuple[int, Any], *, faces: str | None) -> Prepared:
    """Decode one input at the size needed, find its faces and cut its crops; failures come back in the result."""
    index, item = indexed
    prepared = Prepared(detector.result_template(input_name(item, index)))
    result = prepared.result
    try:
        _prepare(detector, item, faces, prepared)
    except ImageLoadError as error:
        result.update(status="error", error=error.reason)
    except Exception as error:  # a face detector failing on one odd image must not sink the others
        logger.warning("%s: %s", result["input"], error)
        result.update(status="error", error=f"{type(error).__name__}: {error}")
    return prepared


def _prepare(detector: Any, item: Any, faces: str | None, prepared: Prepared) -> None:
    side = detector.preprocessing.resize_size
    finds_faces = detector.face_mode(faces) != "none"
    if detector.decode == "full":
        decoded = decode_input(item)
    else:
        decoded = decode_input(item, min_short_side=side, min_long_side=DETECTION_SIDE if finds_faces else 0)
    width, height = decoded.full_size
    found = detector.find_faces(decoded.image, faces)
    boxes = [box_in_full(box, decoded.scale, width, height) for box in found or []]
    crop_side = detector.crop_size or side
    if boxes and decoded.scale < 1.0:
        # Each face square must keep at least the crop's pixels: decode again, less scaled, for a small face.
        squares = [face_square(box, width, height, margin=detector.margin) for box in boxes]
        needed = max(crop_side / max(1, x1 - x0) for x0, _, x1, _ in squares)
        if needed > decoded.scale:
            decoded = decode_input(item, min_short_side=math.ceil(needed * min(width, height)))
    result = prepared.result
    result.update(width=width, height=height)
    for face_index, box in enumerate(boxes):
        result["faces"].append({"box": box.as_list(), "score": round(box.score, 4), "fake_prob": None})
        crop = crop_decoded(
            decoded, box, margin=detector.margin, side=crop_side, crop_size=detector.crop_size, align=detector.align
        )
        prepared.views.append(preprocess_image(crop, detector.preprocessing))
        prepared.slots.append(face_index)
    if not boxes:
        result["status"] = "no_face" if found is not None else "ok"
        prepared.views.append(preprocess_image(decoded.image, detector.preprocessing))
        prepared.slots.append(None)


def score_prepared(detector: Any, batch: list[Prepared]) -> list[dict[str, Any]]:
    """Score the model inputs of prepared inputs in one batch and finish their results (fake_prob, label)."""
    views = [view for prepared in batch for view in prepared.views]
    logits = detector.backend.logits(np.stack(views)) if views else np.zeros(0)
    fake_probs = iter(sigmoid(logits).astype(np.float64).tolist())
    for prepared in batch:
        result = prepared.result
        for slot in prepared.slots:
            fake_prob = float(next(fake_probs))
            if slot is None:
                result["fake_prob"] = fake_prob
            else:
                result["faces"][slot]["fake_prob"] = fake_prob
                result["fake_prob"] = max(fake_prob, result["fake_prob"] or 0.0)
        result["label"] = detector.label_of(result["fake_prob"])
    return [prepared.result for prepared in batch]


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, window: int) -> Iterator[Future[R]]:
    """Futures of ``fn(item)`` in input order, with at most ``window`` submitted ahead to ``workers`` threads.

    ``workers=0`` computes each item in the calling thread when its future is taken.
    """
    if workers <= 0:
        for item in items:
            future: Future[R] = Future()
            try:
                future.set_result(fn(item))
            except Exception as error:
                future.set_exception(error)
            yield future
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dfkd-prepare") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:  # the consumer stopped early: drop what has not started
            for future in pending:
                future.cancel()


def stream_predictions(
    detector: Any, inputs: Iterable[Any], *, faces: str | None = None, workers: int | None = None
) -> Iterator[dict[str, Any]]:
    """One result per input, in input order, as soon as it is scored (see the module docstring)."""
    workers = detector.workers if workers is None else workers
    if isinstance(inputs, Sequence) and len(inputs) <= 1:
        workers = 0  # nothing to overlap: no threads to start (live frames, single uploads)
    window = 2 * max(1, workers) + min(detector.batch_size, MAX_WINDOW_BATCH)
    prepare = functools.partial(prepare_input, detector, faces=faces)
    batch: list[Prepared] = []
    n_views = 0
    for future in ordered_map(prepare, enumerate(inputs), workers=workers, window=window):
        if batch and not future.done():  # score what is ready rather than wait for a full batch
            yield from score_prepared(detector, batch)
            batch, n_views = [], 0
        prepared = future.result()
        batch.append(prepared)
        n_views += len(prepared.views)
        if n_views >= detector.batch_size or len(batch) >= MAX_WINDOW_BATCH:
            yield from score_prepared(detector, batch)
            batch, n_views = [], 0
    if batch:
        yield from score_prepared(detector, batch)
