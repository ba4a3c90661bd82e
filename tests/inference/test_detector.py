"""The Detector API: mixed inputs, faces, batching, thread safety, both backends, explanations."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dfkd
from dfkd.inference.detector import Detector
from dfkd.models import ModelFileError
from tests.inference.helpers import ASTRONAUT_BOX, iou, noise_image

RESULT_KEYS = {"input", "kind", "status", "error", "fake_prob", "label", "threshold", "faces", "width", "height"}


def test_predict_takes_paths_images_and_arrays_and_reports_unreadable_ones(tiny_model: Path, tmp_path: Path) -> None:
    detector = Detector.load(tiny_model, faces="none")
    good = tmp_path / "good.png"
    noise_image(0).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    inputs = [str(good), noise_image(1), np.asarray(noise_image(2)), tmp_path / "missing.jpg", broken, good]
    results = detector.predict(inputs)
    assert [result["status"] for result in results] == ["ok", "ok", "ok", "error", "error", "ok"]
    assert all(set(result) >= RESULT_KEYS for result in results)
    assert results[0]["input"] == str(good) and results[2]["input"] == "array[2]"
    assert results[3]["error"] == "cannot read: no such file or directory" and results[4]["error"]
    for result in results:
        ok = result["status"] == "ok"
        assert (result["fake_prob"] is not None) == ok and (result["error"] is None) == ok
        if ok:
            assert 0.0 <= result["fake_prob"] <= 1.0
            assert result["label"] == ("fake" if result["fake_prob"] >= result["threshold"] else "real")
    assert results[0]["fake_prob"] == pytest.approx(results[5]["fake_prob"])


def test_faces_are_scored_and_the_image_takes_the_most_fake_face(
    tiny_model: Path, astronaut_image: Image.Image, face_model: Path | None
) -> None:
    detector = Detector.load(tiny_model, faces="auto", face_model=face_model)
    canvas = Image.new("RGB", (1024, 512))
    canvas.paste(astronaut_image, (0, 0))
    canvas.paste(astronaut_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((400, 400)), (580, 60))
    single, double, noise = detector.predict([astronaut_image, canvas, noise_image(4, (200, 200))])
    assert single["status"] == "ok" and len(single["faces"]) == 1
    assert iou(single["faces"][0]["box"], ASTRONAUT_BOX) > 0.7
    assert single["fake_prob"] == single["faces"][0]["fake_prob"]
    assert len(double["faces"]) == 2
    assert double["fake_prob"] == max(face["fake_prob"] for face in double["faces"])
    assert noise["status"] == "no_face" and noise["faces"] == [] and noise["fake_prob"] is not None
    whole = detector.predict([astronaut_image], faces="none")[0]
    assert whole["faces"] == [] and whole["fake_prob"] != single["fake_prob"]


def test_batching_does_not_change_scores(tiny_model: Path) -> None:
    images = [noise_image(seed, (64 + seed, 80)) for seed in range(7)]
    small = Detector.load(tiny_model, faces="none", batch_size=2).predict(images)
    large = Detector.load(tiny_model, faces="none", batch_size=32).predict(images)
    assert [r["fake_prob"] for r in small] == pytest.approx([r["fake_prob"] for r in large], abs=1e-6)


def test_predict_is_thread_safe(tiny_model: Path, astronaut_image: Image.Image, face_model: Path | None) -> None:
    detector = Detector.load(tiny_model, faces="auto", face_model=face_model)
    inputs = [astronaut_image, noise_image(5), astronaut_image.resize((300, 300))]
    expected = [result["fake_prob"] for result in detector.predict(inputs)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda _: [r["fake_prob"] for r in detector.predict(inputs)], range(4)))
    for run in runs:
        assert run == pytest.approx(expected, abs=1e-6)


def test_onnx_and_torch_detectors_agree(
    tiny_model: Path, tiny_onnx: Path, astronaut_image: Image.Image, face_model: Path | None
) -> None:
    inputs = [astronaut_image, noise_image(6), noise_image(7, (50, 120))]
    torch_results = Detector.load(tiny_model, face_model=face_model).predict(inputs)
    onnx_detector = Detector.load(tiny_onnx, face_model=face_model)
    onnx_results = onnx_detector.predict(inputs)
    assert onnx_detector.backend.kind == "onnx"
    # Its threads sleep between batches rather than spin on the cores the decoding workers need.
    options = onnx_detector.backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for torch_result, onnx_result in zip(torch_results, onnx_results, strict=True):
        assert onnx_result["status"] == torch_result["status"]
        assert onnx_result["fake_prob"] == pytest.approx(torch_result["fake_prob"], abs=1e-5)
    metadata = onnx_detector.metadata
    assert metadata["architecture"]["name"] == "resnet8_fast"
    assert metadata["preprocessing"]["input_size"] == 64 and metadata["threshold"] == 0.5
    assert metadata["labels"] == {"0": "real", "1": "fake"} and metadata["metrics"] == {"val_auc": 0.5}


def test_explain_returns_an_overlay_and_onnx_says_why_not(
    tiny_model: Path, tiny_onnx: Path, astronaut_image: Image.Image, face_model: Path | None
) -> None:
    overlay = Detector.load(tiny_model, face_model=face_model).explain(astronaut_image)
    assert overlay.mode == "RGB" and overlay.size == (256, 256)
    with pytest.raises(NotImplementedError, match="PyTorch"):
        Detector.load(tiny_onnx, faces="none").explain(astronaut_image)


def test_explain_shows_the_evidence_for_the_label_predict_gives(
    tiny_model: Path, astronaut_image: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The map targeted "fake" at probability 0.5 while predict labels at the card's threshold: a photo scored
    between the two was labelled real and explained as fake."""
    import dfkd.inference.explain as explain

    targets: list[bool] = []
    real_target = explain.DecisionTarget

    def recording(fake: bool):
        targets.append(bool(fake))
        return real_target(fake)

    monkeypatch.setattr(explain, "DecisionTarget", recording)
    detector = Detector.load(tiny_model, faces="none")
    prob = detector.predict([astronaut_image])[0]["fake_prob"]
    for threshold in (prob - 0.01, prob + 0.01):  # the label flips across the score; the map's target follows it
        detector.use_threshold(min(max(threshold, 0.0), 1.0))
        label = detector.predict([astronaut_image])[0]["label"]
        detector.explain(astronaut_image)
        assert targets[-1] == (label == "fake")
    assert targets[-2:] == [True, False]


def test_a_thin_strip_is_resized_where_the_crop_reads_only(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 x 40,000 image (40k pixels, under any pixel limit) was resized to 256 x 10 million first: gigabytes."""
    from dfkd.data.preprocess import _center_offset, resize_and_crop

    sizes: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def recording(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        return resize(self, size, *args, **kwargs)

    rng = np.random.default_rng(0)
    for width, height in ((3, 2000), (2000, 3)):
        image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        long = int(256 * max(width, height) / min(width, height))
        full = image.resize((256, long) if width <= height else (long, 256), Image.BILINEAR)
        left, top = _center_offset(full.width, 224), _center_offset(full.height, 224)
        expected = np.asarray(full.crop((left, top, left + 224, top + 224)), dtype=int)
        assert np.abs(np.asarray(resize_and_crop(image, 256, 224), dtype=int) - expected).max() <= 1
    strip = Image.new("RGB", (1, 40_000), (128, 128, 128))
    monkeypatch.setattr(Image.Image, "resize", recording)
    result = Detector.load(tiny_model, faces="none", workers=0).predict([strip])[0]
    assert result["status"] == "ok" and resize_and_crop(strip, 256, 224).size == (224, 224)
    assert sizes and max(width * height for width, height in sizes) <= 256 * 256  # not 256 x 10,240,000


def test_load_rejects_files_that_are_not_models(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelFileError, match=r"junk\.onnx"):
        Detector.load(junk)
    with pytest.raises(ModelFileError, match="not found"):
        Detector.load(tmp_path / "missing.safetensors")


def test_detector_is_exported_lazily_from_the_package() -> None:
    assert dfkd.Detector is Detector
    code = "import sys, dfkd; assert 'torch' not in sys.modules and 'dfkd.inference' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
