"""Aligned face crops: the five points land on the mean face, the overhang is measured, degenerate points refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfkd.faces.align import (
    MEAN_FACE_5,
    TEMPLATE_FACE_CENTRE,
    TEMPLATE_FACE_SIDE,
    align_face,
    aligned_face_matrix,
    aligned_landmarks,
    mirrored_share,
)


def _target(size: int, margin: float) -> np.ndarray:
    return (MEAN_FACE_5 - TEMPLATE_FACE_CENTRE) * (size / (1 + 2 * margin) / TEMPLATE_FACE_SIDE) + size / 2


def _turned_face(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """The mean face's five points turned by ``angle`` degrees, scaled and moved: a face as a photo shows it."""
    theta = np.radians(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (MEAN_FACE_5 - 56.0) @ rotation.T * scale + np.array(shift)


@pytest.mark.parametrize(("angle", "scale", "margin"), [(0.0, 1.0, 0.0), (25.0, 2.5, 0.1), (-40.0, 0.8, 0.3)])
def test_every_face_lands_on_the_mean_face(angle: float, scale: float, margin: float) -> None:
    points = _turned_face(angle, scale, (300.0, 220.0))
    matrix = aligned_face_matrix(points, 128, margin)
    np.testing.assert_allclose(aligned_landmarks(points, matrix), _target(128, margin), atol=1e-3)


def test_the_crop_shows_the_photo_where_the_landmarks_send_it() -> None:
    # A photo whose pixel (x, y) has colour (x, y, 0) / 2: the crop's pixels tell where in the photo they came from.
    ys, xs = np.mgrid[0:400, 0:400]
    photo = Image.fromarray(np.stack([xs // 2, ys // 2, np.zeros_like(xs)], axis=-1).astype(np.uint8))
    points = _turned_face(30.0, 1.5, (200.0, 200.0))
    crop, matrix = align_face(photo, points, margin=0.1, size=96)
    assert crop.size == (96, 96) and mirrored_share(matrix, photo.size, 96) == 0.0
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    x, y = (inverse @ np.array([48.0, 20.0, 1.0]))[:2]  # a crop pixel mapped back into the photo
    np.testing.assert_allclose(np.asarray(crop)[20, 48, :2], [x / 2, y / 2], atol=1.5)


def test_a_face_at_the_photo_border_reports_its_mirrored_share() -> None:
    photo = Image.new("RGB", (200, 200), (90, 120, 150))
    inside = align_face(photo, _turned_face(0.0, 1.0, (100.0, 100.0)), margin=0.1, size=64)[1]
    corner = align_face(photo, _turned_face(0.0, 1.0, (20.0, 20.0)), margin=0.1, size=64)
    assert mirrored_share(inside, photo.size, 64) == 0.0
    assert 0.2 < mirrored_share(corner[1], photo.size, 64) < 0.9
    assert np.asarray(corner[0]).min() == 90  # mirrored from the photo, not filled black


def test_a_face_much_larger_than_the_crop_is_area_averaged_not_aliased() -> None:
    # A one-pixel checkerboard shrunk about 12x: sampled bilinearly it keeps black and white speckle; averaged, grey.
    checker = ((np.indices((2000, 2000)).sum(axis=0) % 2) * 255).astype(np.uint8)
    photo = Image.fromarray(np.stack([checker] * 3, axis=-1))
    crop = np.asarray(align_face(photo, _turned_face(0.0, 4.0, (1000.0, 1000.0)), margin=0.0, size=32)[0])
    assert abs(float(crop.mean()) - 127.5) < 10 and crop.std() < 20


def test_degenerate_landmarks_are_refused() -> None:
    with pytest.raises(ValueError, match="degenerate"):
        aligned_face_matrix(np.zeros((5, 2)), 64, 0.1)
