"""Face detection and cropping: every available detector finds the astronaut's face; crops are square and safe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfkd.faces.detect import (
    DETECTOR_NAMES,
    FaceBox,
    FaceDetectorUnavailable,
    available_detectors,
    build_face_detector,
    crop_face,
    detect_faces,
    detect_in_padded,
    face_square,
)
from tests.conftest import YUNET
from tests.inference.helpers import ASTRONAUT_BOX, iou, noise_image


def _detector_or_skip(name: str):
    model_path = YUNET if name == "yunet" else None
    if name not in available_detectors(model_path if model_path and model_path.is_file() else None):
        reason = f"no YuNet model file at {YUNET}" if name == "yunet" else "its wheel is not installed"
        pytest.skip(f"{name} is not available here ({reason})")
    return build_face_detector(name, model_path)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_each_available_detector_finds_the_astronaut_face(name: str, astronaut_image: Image.Image) -> None:
    faces = _detector_or_skip(name).detect(astronaut_image)
    assert len(faces) == 1, faces
    assert iou(faces[0].as_list(), ASTRONAUT_BOX) > 0.7
    assert 0.5 < faces[0].score <= 1.0
    assert all(isinstance(value, int) for value in faces[0].as_list())


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_detectors_find_no_face_in_noise(name: str) -> None:
    assert _detector_or_skip(name).detect(noise_image(3, (320, 240))) == []


def test_several_faces_are_found_best_first(astronaut_image: Image.Image, face_model: Path | None) -> None:
    canvas = Image.new("RGB", (1024, 512), (30, 30, 30))
    canvas.paste(astronaut_image, (0, 0))
    canvas.paste(astronaut_image.resize((384, 384)), (600, 100))
    faces = detect_faces(canvas, model_path=face_model)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    assert sorted(face.x0 < 512 for face in faces) == [False, True]


def test_a_face_filling_its_frame_is_found_with_its_landmarks_in_the_frames_pixels(
    astronaut_image: Image.Image, face_model: Path | None
) -> None:
    detector = build_face_detector("auto", face_model)
    (whole,) = detector.detect(astronaut_image)
    x0, y0, x1, y1 = ASTRONAUT_BOX
    tight = astronaut_image.crop((x0 - 10, y0 - 10, x1 + 10, y1 + 10))  # as a margin-0 training crop frames it
    (box,) = detect_in_padded(detector, tight)
    assert box.landmarks is not None  # aligned crops need them
    expected = np.array(whole.landmarks) - np.array([x0 - 10, y0 - 10])
    assert np.abs(np.array(box.landmarks) - expected).max() < 6


def test_auto_uses_yunet_only_with_its_model_file(yunet_path: Path) -> None:
    assert build_face_detector("auto", yunet_path).name == "yunet"
    without = available_detectors(None)
    assert "yunet" not in without
    if without:
        assert build_face_detector("auto").name == without[0]


@pytest.mark.parametrize("name", ["centerface", "mtcnn"])
def test_a_yunet_file_given_for_every_detector_is_left_to_yunet(name: str, tmp_path: Path) -> None:
    """``--face-model`` names YuNet's file; choosing another detector with it set must not feed it that file."""
    if name not in available_detectors(None):
        pytest.skip(f"{name}'s wheel is not installed")
    not_its_model = tmp_path / "face_detection_yunet.onnx"
    not_its_model.write_bytes(b"not CenterFace's graph")
    assert build_face_detector(name, not_its_model) is build_face_detector(name)


def test_yunet_without_a_model_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(FaceDetectorUnavailable, match="model"):
        build_face_detector("yunet", None)
    with pytest.raises(FaceDetectorUnavailable, match="not found"):
        build_face_detector("yunet", tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="unknown face detector"):
        build_face_detector("haar")


def test_crop_is_a_square_with_margin_on_each_side() -> None:
    image = Image.new("RGB", (400, 300))
    box = FaceBox(150, 100, 250, 180, 0.9)  # 100 wide, 80 high
    assert face_square(box, 400, 300, margin=0.3) == (120, 60, 280, 220)
    crop = crop_face(image, box)
    assert crop.size == (160, 160)
    assert crop_face(image, box, size=64).size == (64, 64)


def test_crop_near_a_border_shifts_inside_and_a_large_face_gives_up_margin_not_pixels() -> None:
    image = Image.new("RGB", (200, 200), (255, 255, 255))
    assert face_square((0, 0, 50, 50), 200, 200, margin=0.3) == (0, 0, 80, 80)
    big = crop_face(image, (20, 20, 180, 180), margin=0.3)  # 1.6 x 160 = 256 > 200: the margin shrinks to fit
    assert big.size == (200, 200)
    assert big.getextrema() == ((255, 255), (255, 255), (255, 255))  # no black fill anywhere
    assert face_square((10, 40, 190, 160), 200, 120, margin=0.3) == (10, 10, 190, 190)  # box wider than the height


def test_yunet_runs_in_several_threads_at_once(yunet_path: Path, astronaut_image: Image.Image) -> None:
    """One onnxruntime session serves every thread; the sizes of concurrent calls must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    detector = build_face_detector("yunet", yunet_path)
    images = [astronaut_image, astronaut_image.resize((384, 384)), astronaut_image.resize((800, 800))] * 6
    expected = [detector.detect(image) for image in images]
    with ThreadPoolExecutor(max_workers=3) as pool:
        found = list(pool.map(detector.detect, images))
    assert found == expected
    assert all(len(faces) == 1 for faces in found)


def test_yunet_finds_what_opencvs_face_detector_finds(yunet_path: Path, astronaut_image: Image.Image) -> None:
    """The network runs on onnxruntime (faster) but is decoded as cv2.FaceDetectorYN decodes it: same faces."""
    import cv2

    from dfkd.faces.backends import _scaled_array, boxes_from_array

    canvas = Image.new("RGB", (1800, 900), (90, 90, 90))
    for index, side in enumerate((260, 340, 420, 500)):  # four faces of different sizes, for the three strides
        canvas.paste(astronaut_image.resize((side, side)), (40 + 380 * index, 60 + 40 * index))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    detector = build_face_detector("yunet", yunet_path)
    reference = cv2.FaceDetectorYN.create(str(yunet_path), "", (320, 320), 0.6, 0.3, 5000)
    for image in (astronaut_image, canvas, noise, astronaut_image.resize((97, 131))):
        pixels, scale = _scaled_array(image, 640)
        reference.setInputSize((pixels.shape[1], pixels.shape[0]))
        _, rows = reference.detect(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        rows = np.zeros((0, 15), np.float32) if rows is None else rows
        corners = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)
        expected = boxes_from_array(
            corners, rows[:, -1], scale, image.width, image.height, landmarks=rows[:, 4:14].reshape(-1, 5, 2)
        )
        found = detector.detect(image)
        assert [face.as_list() for face in found] == [face.as_list() for face in expected]
        for ours, theirs in zip(found, expected, strict=True):
            assert ours.score == pytest.approx(theirs.score, abs=1e-5)
            assert np.allclose(ours.landmarks, theirs.landmarks, atol=1e-2)
    assert len(detector.detect(canvas)) == 4


def test_an_onnx_file_that_is_not_yunet_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["out"])],
        "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(FaceDetectorUnavailable, match="not a YuNet model"):
        build_face_detector("yunet", path)
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(FaceDetectorUnavailable, match="cannot load"):
        build_face_detector("yunet", tmp_path / "junk.onnx")


def test_a_large_photo_is_seen_through_a_view_of_at_most_640_px(yunet_path: Path, astronaut_image: Image.Image):
    """Boxes found on the reduced view come back in the photo's pixels, at the face."""
    photo = Image.new("RGB", (3000, 2000), (90, 110, 130))
    photo.paste(astronaut_image.resize((1024, 1024)), (1500, 400))  # the face at 2x: ASTRONAUT_BOX * 2 + offset
    faces = build_face_detector("yunet", yunet_path).detect(photo)
    assert len(faces) == 1
    expected = [2 * ASTRONAUT_BOX[0] + 1500, 2 * ASTRONAUT_BOX[1] + 400, 2 * ASTRONAUT_BOX[2] + 1500]
    expected.append(2 * ASTRONAUT_BOX[3] + 400)
    assert iou(faces[0].as_list(), expected) > 0.7
