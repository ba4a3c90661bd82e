"""Aligned face crops: every face turned, scaled and placed so that its five landmarks sit on one mean face.

A square crop around a detector's box keeps the face's roll, and where the photo is too tight for the margin, the
face's size and place in the crop. Collections differ in exactly that (FFHQ-style portraits and StyleGAN2 faces are
aligned with level eyes, snapshots are tilted and tightly framed), so a detector trained on box crops can learn
"aligned portrait" as "fake". An aligned crop gives every face the same geometry, so that cue is gone at the source.

The mean face is ArcFace's five-point template (112 x 112 frame). A face detector's box around it is about 106 px of
that frame; an aligned crop of side ``size`` with ``margin`` shows that box ``size / (1 + 2 margin)`` px wide,
centred, plus ``margin`` of it on each side, as a square crop around the box would. Pixels the photo does not have
(a tight snapshot turned level) are mirrored from inside it, and the crop's ``overhang`` says how much of it that
is: a class that needs it more than the other is framed differently, which ``dfkd crop-faces`` reports.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from dfkd.faces.backends import FaceBox

# ArcFace's five-point template in its 112 x 112 aligned-face frame (eye, eye, nose tip, mouth corner, mouth corner).
MEAN_FACE_5 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# Where YuNet's face box falls in that frame: side 106.6, centre (56.9, 64.1), medians over 200 realfaces-dev photos
# of all sources and both classes (benchmarks/aligned_crops.py template), taken here as 106.5 and the template's own
# axis, x = 56. An aligned crop's ``margin`` is then a share of the box a detector would draw, as for square crops.
TEMPLATE_FACE_SIDE = 106.5
TEMPLATE_FACE_CENTRE = np.array([56.0, 64.0])

__all__ = [
    "MEAN_FACE_5",
    "align_face",
    "aligned_face_matrix",
    "aligned_landmarks",
    "box_landmarks",
    "landmarks_in_box",
    "mirrored_share",
    "similarity_transform",
]


def landmarks_in_box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The mean face's five points placed in a face box (for detectors that find no landmarks) [5, 2]."""
    # The template's face spans about x 14..98 and y 26..116 of its 112-px frame.
    scale = np.array([(x1 - x0) / 84.0, (y1 - y0) / 90.0])
    return (MEAN_FACE_5 - np.array([14.0, 26.0])) * scale + np.array([x0, y0])


def box_landmarks(box: FaceBox) -> np.ndarray:
    """The five points the detector found for ``box``, else the mean face's placed in it [5, 2]."""
    return np.array(box.landmarks, dtype=np.float64) if box.landmarks else landmarks_in_box(*box.as_list())


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 least-squares similarity (rotation, uniform scale, shift) taking ``source`` points onto ``target``."""
    matrix, _ = cv2.estimateAffinePartial2D(source.astype(np.float32), target.astype(np.float32), method=cv2.LMEDS)
    if matrix is None:  # degenerate points: fall back to the plain least-squares solution
        matrix, _ = cv2.estimateAffinePartial2D(source.astype(np.float32), target.astype(np.float32))
    if matrix is None:
        raise ValueError("the five landmarks are degenerate: no similarity transform maps them onto the mean face")
    return matrix


def aligned_face_matrix(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """The 2 x 3 map from image pixels to a ``size`` x ``size`` aligned crop (see the module's docstring)."""
    face_side = size / (1.0 + 2.0 * margin)
    target = (MEAN_FACE_5 - TEMPLATE_FACE_CENTRE) * (face_side / TEMPLATE_FACE_SIDE) + size / 2.0
    return similarity_transform(np.asarray(landmarks, dtype=np.float64)[:5], target)


def aligned_landmarks(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``landmarks`` [K, 2] in image pixels mapped into the aligned crop by ``matrix``."""
    points = np.asarray(landmarks, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(
    image: Image.Image, landmarks: np.ndarray, *, margin: float, size: int | None
) -> tuple[Image.Image, np.ndarray]:
    """The aligned RGB crop of the face whose five points are ``landmarks``, and its 2 x 3 matrix from the photo.

    ``size`` None keeps the photo's scale (the crop's side is what it spans in the photo, at least 8 px). Where the
    crop reaches past the photo it is mirrored from inside it (see :func:`mirrored_share`).
    """
    if size is None:
        reference = 256
        span = reference / float(np.hypot(*aligned_face_matrix(landmarks, reference, margin)[0, :2]))
        size = max(8, round(span))
    full = matrix = aligned_face_matrix(landmarks, size, margin)
    pixels = np.asarray(image.convert("RGB"))
    # Downscaling by more than 2x with bilinear sampling aliases: area-average first to about the crop's scale.
    scale = float(np.hypot(*matrix[0, :2]))
    if scale < 0.5:
        factor = 1.0 / (2.0 * scale)
        reduced = (max(1, round(pixels.shape[1] / factor)), max(1, round(pixels.shape[0] / factor)))
        pixels = cv2.resize(pixels, reduced, interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.diag([image.width / reduced[0], image.height / reduced[1], 1.0])
    crop = cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(crop), full


def mirrored_share(matrix: np.ndarray, photo_size: tuple[int, int], side: int) -> float:
    """The share of a ``side``-px aligned crop (``matrix`` from :func:`align_face`) lying outside a ``photo_size``
    (width, height) photo, which the crop mirrors in: a report compares it between classes (crop-faces only, not
    inference)."""
    ys, xs = np.mgrid[0:side, 0:side] + 0.5  # pixel centres
    inverse = cv2.invertAffineTransform(matrix)
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    width, height = photo_size
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    return round(1.0 - float(inside.mean()), 4)
