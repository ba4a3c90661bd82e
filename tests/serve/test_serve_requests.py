"""What a request may ask and how its problems are answered: face modes per request, files that are no image against
images that do not decode, multipart bodies cut short, and the wording of size refusals."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from dfkd.faces.detect import DETECTOR_NAMES, available_detectors
from dfkd.inference import Detector
from dfkd.serve import create_app
from dfkd.serve.routes import FACE_MODES
from tests.conftest import YUNET
from tests.serve.helpers import ASTRONAUT_BOX, LiveServer, astronaut, encode, noise_image, png_header_only
from tests.serve.test_serve_limits import error_of, post


def astronaut_part() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", ("astronaut.png", encode(astronaut()), "image/png"))]


def test_a_request_may_choose_any_face_mode_of_the_command_line() -> None:
    from dfkd.inference.detector import FACE_MODES as DETECTOR_FACE_MODES  # what `dfkd serve --faces` accepts

    assert set(FACE_MODES) == set(DETECTOR_FACE_MODES) == {"auto", "none", *DETECTOR_NAMES}


@pytest.mark.parametrize("name", ["centerface", "mtcnn"])
def test_a_request_may_choose_a_wheel_face_detector(server: LiveServer, name: str) -> None:
    if name not in available_detectors():
        pytest.skip(f"the {name} face detector's wheel is not installed")
    response = post(server.url, astronaut_part(), params={"faces": name})  # the server's default is faces=none
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["faces"] == name
    (result,) = body["results"]
    assert result["status"] == "ok" and len(result["faces"]) == 1
    box = result["faces"][0]["box"]
    assert all(abs(got - want) <= 12 for got, want in zip(box, ASTRONAUT_BOX, strict=True)), box


def test_yunet_per_request_without_the_servers_model_file_is_a_400_saying_why(server: LiveServer) -> None:
    error = error_of(post(server.url, astronaut_part(), params={"faces": "yunet"}), 400, "invalid_request")
    assert "faces=yunet" in error["message"] and "--face-model" in error["message"]
    unknown = error_of(post(server.url, astronaut_part(), params={"faces": "sometimes"}), 400, "invalid_request")
    assert "faces" in unknown["message"] and "centerface" in unknown["message"]


def test_yunet_per_request_works_when_the_server_has_its_model_file(serve_model: Path) -> None:
    if not YUNET.is_file():
        pytest.skip(f"no YuNet model file at {YUNET}")
    detector = Detector.load(serve_model, faces="none", face_model=YUNET)
    with TestClient(create_app(detector)) as client:
        response = client.post("/v1/detect", params={"faces": "yunet"}, files=astronaut_part())
    assert response.status_code == 200, response.text
    assert response.json()["faces"] == "yunet" and len(response.json()["results"][0]["faces"]) == 1


def test_a_text_file_named_like_an_image_is_415_not_an_image(server: LiveServer) -> None:
    for content_type in ("image/jpeg", "application/octet-stream"):
        files = [("files", ("x.jpg", b"just some text, no image", content_type))]
        error = error_of(post(server.url, files), 415, "unsupported_media_type")
        assert error["file"] == "x.jpg" and "not an image" in error["message"] and content_type in error["message"]


def test_a_truncated_jpeg_is_422_undecodable(server: LiveServer) -> None:
    jpeg = encode(noise_image(5, (400, 300)), "JPEG")
    files = [("files", ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"))]
    error = error_of(post(server.url, files), 422, "undecodable_image")
    assert error["file"] == "cut.jpg" and "truncated" in error["message"]


def multipart(boundary: str, data: bytes) -> bytes:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
    return head.encode() + b"Content-Type: image/png\r\n\r\n" + data


def test_a_multipart_body_without_its_closing_boundary_is_a_400_bad_multipart(server: LiveServer) -> None:
    boundary = "b0undary"
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    data = encode(noise_image(6))

    def send(body: bytes) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/detect", content=body, headers=headers, timeout=30)

    for cut in (multipart(boundary, data), multipart(boundary, data) + b"\r\n--" + boundary.encode() + b"\r\n", b""):
        error = error_of(send(cut), 400, "bad_multipart")
        assert "malformed multipart body" in error["message"] and "closing boundary" in error["message"]
    whole = send(multipart(boundary, data) + f"\r\n--{boundary}--\r\n".encode())
    assert whole.status_code == 200 and whole.json()["results"][0]["status"] == "ok"


def test_a_decompression_bomb_is_refused_in_the_words_of_every_size_refusal(server: LiveServer) -> None:
    # 400 megapixels: above Pillow's own bomb limit too, which refuses without telling the size.
    files = [("files", ("bomb.png", png_header_only(20000, 20000), "image/png"))]
    error = error_of(post(server.url, files), 413, "image_too_large")
    assert error["message"] == ("bomb.png: 20000x20000 = 400,000,000 pixels is above the limit of 40,000,000 pixels")
