"""The detection pipeline: scaled decoding (same scores as a full decode within the stated tolerance), EXIF, order,
bounded memory, unreadable inputs, and an ONNX model that never imports torch."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data.images import decode_image
from dfkd.inference import pipeline
from dfkd.inference.detector import SCALED_DECODE_TOLERANCE, Detector
from dfkd.inference.run import collect_inputs
from tests.inference.helpers import make_tiny_model, noise_image, phone_photo

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A 12-MP photo with a large face, a 3-MP one with a small face (decoded twice), and one without a face."""
    folder = tmp_path_factory.mktemp("photos")
    specs = [(0, (4032, 3024), 900), (1, (2016, 1512), 120), (2, (1600, 1200), 0)]
    paths = []
    for seed, size, face_side in specs:
        photo = phone_photo(seed, size=size, face_side=face_side) if face_side else noise_image(seed, size)
        path = folder / f"photo{seed}.jpg"
        path.write_bytes(jpeg_bytes(photo))
        paths.append(path)
    return paths


def test_a_jpeg_is_decoded_dct_scaled_and_keeps_its_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = jpeg_bytes(noise_image(0, (1600, 1200)), exif=exif)
    decoded = decode_image(data, min_long_side=300)
    assert decoded.full_size == (1200, 1600)
    assert decoded.image.size == (300, 400)  # 1/4 scale, turned upright
    assert decoded.scale == pytest.approx(0.25)
    assert decode_image(data).image.size == (1200, 1600)  # nothing asked: full size
    assert decode_image(data, min_short_side=700).image.size == (1200, 1600)  # 1/2 would be too small


def test_other_formats_are_decoded_fully_then_resized() -> None:
    buffer = io.BytesIO()
    noise_image(1, (1000, 800)).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), min_short_side=200)
    assert decoded.full_size == (1000, 800)
    assert decoded.image.size == (250, 200)


def test_scaled_decode_scores_match_the_full_decode_path(
    tiny_model: Path, photos: list[Path], face_model: Path | None
) -> None:
    full = Detector.load(tiny_model, face_model=face_model, decode="full", workers=0).predict(photos)
    scaled = Detector.load(tiny_model, face_model=face_model, workers=2).predict(photos)
    for reference, fast in zip(full, scaled, strict=True):
        assert fast["status"] == reference["status"]
        assert (fast["width"], fast["height"]) == (reference["width"], reference["height"])
        assert len(fast["faces"]) == len(reference["faces"])
        assert abs(fast["fake_prob"] - reference["fake_prob"]) <= SCALED_DECODE_TOLERANCE
        for fast_face, reference_face in zip(fast["faces"], reference["faces"], strict=True):
            assert max(abs(a - b) for a, b in zip(fast_face["box"], reference_face["box"], strict=True)) <= 16
    assert [result["status"] for result in full] == ["ok", "ok", "no_face"]


def test_a_small_face_is_decoded_again_at_the_resolution_its_crop_needs(
    tiny_model: Path, photos: list[Path], face_model: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    decode = pipeline.decode_input

    def counting(item: object, **sides: int) -> object:
        calls.append(sides.get("min_short_side", 0))
        return decode(item, **sides)

    monkeypatch.setattr(pipeline, "decode_input", counting)
    Detector.load(tiny_model, face_model=face_model, workers=0).predict([photos[0]])
    assert len(calls) == 1  # a large face: its crop comes from the detection view
    calls.clear()
    Detector.load(tiny_model, face_model=face_model, workers=0).predict([photos[1]])
    assert len(calls) == 2 and calls[1] > calls[0]


def test_results_stream_in_input_order_with_failures_in_place(tiny_model: Path) -> None:
    inputs: list[object] = [jpeg_bytes(noise_image(seed, (300, 200))) for seed in range(10)]
    inputs[3] = b"not an image"
    inputs[7] = noise_image(7, (120, 90))
    sequential = Detector.load(tiny_model, faces="none", workers=0, batch_size=4).predict(inputs)
    threaded = Detector.load(tiny_model, faces="none", workers=3, batch_size=4).predict(inputs)
    assert [result["status"] for result in threaded] == ["ok"] * 3 + ["error"] + ["ok"] * 6
    assert "not an image" in threaded[3]["error"]
    for a, b in zip(sequential, threaded, strict=True):
        assert a["input"] == b["input"] and a["fake_prob"] == pytest.approx(b["fake_prob"], abs=1e-6)


def test_the_pipeline_holds_a_bounded_number_of_inputs_whatever_the_batch_size(tiny_model: Path) -> None:
    data = jpeg_bytes(noise_image(0, (200, 150)))
    pulled = 0

    def inputs():  # a lazy source: how far ahead the pipeline reads it is what it holds
        nonlocal pulled
        for _ in range(300):
            pulled += 1
            yield data

    detector = Detector.load(tiny_model, faces="none", workers=2, batch_size=10_000)
    most_ahead = 0
    for done, _ in enumerate(detector.stream(inputs()), start=1):
        most_ahead = max(most_ahead, pulled - done)
    assert done == 300
    assert most_ahead <= 2 * 2 + 2 * pipeline.MAX_WINDOW_BATCH  # in flight, and in one model batch


def test_an_onnx_model_never_imports_torch(tiny_onnx: Path, photos: list[Path], tmp_path: Path) -> None:
    """Loading and scoring with an ONNX model (Python API and `dfkd detect`) leaves torch unimported."""
    from dfkd.faces.detect import available_detectors
    from tests.conftest import YUNET

    face_model = str(YUNET) if YUNET.is_file() else None
    faces = "auto" if [name for name in available_detectors(face_model) if name != "mtcnn"] else "none"
    script = f"""
import json, sys
import dfkd
detector = dfkd.Detector.load({str(tiny_onnx)!r}, faces={faces!r}, face_model={face_model!r})
results = detector.predict([{str(photos[0])!r}])
assert results[0]["fake_prob"] is not None, results
from dfkd.cli import app
try:
    app({["detect", "-m", str(tiny_onnx), "--faces", faces, str(photos[2]), "--json", str(tmp_path / "r.json")]!r})
except SystemExit as exit:
    assert not exit.code, exit.code
print(json.dumps(sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "DFKD_FACE_MODEL": face_model or ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["status"] in ("ok", "no_face")


def test_detect_lists_an_unreadable_named_file_and_scores_the_rest(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(noise_image(0, (200, 150))))
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(good.read_bytes())
    real_open = Image.open

    def refusing(source: object, *args: object, **kwargs: object) -> Image.Image:
        if str(source) == str(locked):  # chmod 000 does not stop root, so the refusal is simulated
            raise PermissionError(13, "Permission denied", str(locked))
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(Image, "open", refusing)
    report = tmp_path / "report.json"
    result = runner.invoke(
        app, ["detect", "-m", str(tiny_model), "--faces", "none", str(good), str(locked), "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    results = json.loads(report.read_text())["results"]
    assert [entry["status"] for entry in results] == ["ok", "error"]
    assert results[1]["error"] == "cannot read: permission denied"


def test_an_unreadable_subfolder_is_skipped_with_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for folder in ("open", "locked"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.jpg").write_bytes(jpeg_bytes(noise_image(0, (40, 30))))
    real_scandir = os.scandir

    def refusing(path: object = ".") -> object:
        if Path(os.fspath(path)).name == "locked":  # chmod 000 does not stop root, so the refusal is simulated
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with caplog.at_level(logging.WARNING, logger="dfkd.inference.run"):
        collected = collect_inputs([tmp_path])
    assert [Path(item.path).parent.name for item in collected.items] == ["open"]
    assert any("locked" in record.getMessage() for record in caplog.records)


def test_loaders_decode_dct_scaled_only_when_asked(tmp_path: Path) -> None:
    from dfkd.data.dataset import ManifestDataset
    from dfkd.data.manifest import Manifest
    from dfkd.data.scan import Sample

    path = tmp_path / "face.jpg"
    path.write_bytes(jpeg_bytes(noise_image(0, (256, 256))))
    manifest = Manifest((Sample(str(path), "real", "train", "test", path.stat().st_size),), "hash")
    assert ManifestDataset(manifest, "train")[0][0].size == (256, 256)  # the reference's exact path by default
    assert ManifestDataset(manifest, "train", decode_side=110)[0][0].size == (128, 128)  # half the stored size
    assert ManifestDataset(manifest, "train", decode_side=160)[0][0].size == (256, 256)  # half would be too small


def test_a_model_trained_on_aligned_crops_is_shown_aligned_faces_on_both_decode_paths(
    tmp_path: Path, photos: list[Path], face_model: Path | None
) -> None:
    from dfkd.faces.detect import crop_face

    face_crop = {"detector": "yunet" if face_model else "centerface", "margin": 0.2, "size": 96}
    make_tiny_model(tmp_path / "box.safetensors", face_crop=face_crop)
    make_tiny_model(tmp_path / "aligned.safetensors", face_crop={**face_crop, "align": True})
    aligned = Detector.load(tmp_path / "aligned.safetensors", face_model=face_model, decode="full", workers=0)
    assert aligned.align and "aligned" in aligned.card.face_crop.describe()
    full = aligned.predict(photos[:2])
    scaled = Detector.load(tmp_path / "aligned.safetensors", face_model=face_model, workers=0).predict(photos[:2])
    boxed = Detector.load(tmp_path / "box.safetensors", face_model=face_model, decode="full", workers=0)
    image = Image.open(photos[0]).convert("RGB")
    (box,) = aligned.find_faces(image)
    expected = aligned.fake_probs([crop_face(image, box, margin=0.2, size=96, align=True)])[0]
    assert full[0]["faces"][0]["fake_prob"] == pytest.approx(expected, abs=1e-5)
    assert abs(boxed.predict(photos[:1])[0]["fake_prob"] - expected) > 1e-4  # the square crop is another view
    for reference, fast in zip(full, scaled, strict=True):
        assert abs(fast["fake_prob"] - reference["fake_prob"]) <= SCALED_DECODE_TOLERANCE
