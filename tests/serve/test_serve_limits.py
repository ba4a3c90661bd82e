"""Every limit answers its status with a JSON error: size, files, pixels, type, decoding, key, timeout."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from dfkd.inference import Detector
from dfkd.serve import ServeLimits, create_app
from tests.serve.helpers import LiveServer, encode, noise_image, png_header_only


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    """The JSON error of a response, after checking its status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def post(url: str, files: list, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/detect", files=files, timeout=30, **kwargs)


def png_part(name: str = "a.png", seed: int = 0) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, encode(noise_image(seed, (32, 32))), "image/png"))


@pytest.fixture(scope="module")
def small_server(serve_detector: Detector) -> Iterator[LiveServer]:
    """Small limits: 64 KiB per request, 3 files, 10,000 pixels, and an API key."""
    limits = ServeLimits(max_request_bytes=64 * 1024, max_files=3, max_pixels=10_000)
    app = create_app(serve_detector, limits, api_key="s3cret")
    with LiveServer(app) as live:
        yield live


KEY = {"X-API-Key": "s3cret"}


def test_content_length_above_the_limit_is_refused_before_the_body_is_read(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 31457280\r\n\r\n"
        )  # no body sent at all: the answer must come from the header alone
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and "30 MiB" in error["message"] and "20 MiB" in error["message"]


def test_a_large_upload_gets_413(small_server: LiveServer) -> None:
    big = encode(noise_image(1, (400, 300)), "PNG")
    assert len(big) > 64 * 1024
    error_of(post(small_server.url, [("files", ("big.png", big, "image/png"))], headers=KEY), 413, "request_too_large")


def test_a_chunked_upload_is_counted_while_it_streams(small_server: LiveServer) -> None:
    boundary = "b0undary"

    def body() -> Iterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'.encode()
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(40):  # 160 KiB in 4 KiB pieces, without a Content-Length
            yield b"\0" * 4096
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(f"{small_server.url}/v1/detect", content=body(), headers=headers, timeout=30)
    assert "content-length" not in response.request.headers
    error = error_of(response, 413, "request_too_large")
    assert "64 KiB" in error["message"]


def test_too_many_files_get_413(small_server: LiveServer) -> None:
    files = [png_part(f"{index}.png", index) for index in range(4)]
    error = error_of(post(small_server.url, files, headers=KEY), 413, "too_many_files")
    assert "at most 3" in error["message"]


def test_too_many_pixels_get_413_from_the_header_alone(small_server: LiveServer, server: LiveServer) -> None:
    files = [("files", ("wide.png", encode(noise_image(2, (200, 60))), "image/png"))]
    error = error_of(post(small_server.url, files, headers=KEY), 413, "image_too_large")
    assert error["file"] == "wide.png" and "12,000 pixels" in error["message"] and "10,000" in error["message"]
    # Decompression bombs: a few hundred bytes that claim 48 and 400 megapixels, refused without decoding.
    for width, height in ((8000, 6000), (20000, 20000)):
        files = [("files", ("bomb.png", png_header_only(width, height), "image/png"))]
        started = time.perf_counter()
        error = error_of(post(server.url, files), 413, "image_too_large")
        assert error["file"] == "bomb.png" and time.perf_counter() - started < 5


def test_unsupported_types_get_415(server: LiveServer) -> None:
    error = error_of(
        post(server.url, [("files", ("notes.txt", b"just text", "text/plain"))]), 415, "unsupported_media_type"
    )
    assert error["file"] == "notes.txt" and "text/plain" in error["message"]
    raw = httpx.post(f"{server.url}/v1/detect", content=encode(noise_image(0)), headers={"Content-Type": "image/png"})
    assert "multipart/form-data" in error_of(raw, 415, "unsupported_media_type")["message"]


def test_undecodable_images_get_422_naming_the_file_and_reason(server: LiveServer) -> None:
    truncated = encode(noise_image(3), "PNG")[:300]
    error = error_of(post(server.url, [("files", ("cut.png", truncated, "image/png"))]), 422, "undecodable_image")
    assert error["file"] == "cut.png" and error["message"].startswith("cut.png: ")
    assert "truncated" in error["message"] or "undecodable" in error["message"]
    empty = error_of(post(server.url, [("files", ("empty.jpg", b"", "image/jpeg"))]), 422, "undecodable_image")
    assert "empty" in empty["message"]
    # Pixels no rule makes colours of were answered 200 with a "prediction_failed" item, as if the model had failed.
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32), np.nan, dtype=np.float32)).save(buffer, format="TIFF")
    nan = error_of(
        post(server.url, [("files", ("nan.tif", buffer.getvalue(), "image/tiff"))]), 422, "undecodable_image"
    )
    assert nan["message"] == "nan.tif: image has non-finite values"


def test_when_no_file_decodes_the_first_error_decides_and_all_are_listed(server: LiveServer) -> None:
    files = [("files", ("bad.jpg", b"\xff\xd8\xff garbage", "image/jpeg")), ("files", ("a.txt", b"x", "text/plain"))]
    response = post(server.url, files)
    error = error_of(response, 422, "undecodable_image")
    assert error["file"] == "bad.jpg"
    listed = response.json()["errors"]
    assert [(item["file"], item["code"]) for item in listed] == [
        ("bad.jpg", "undecodable_image"),
        ("a.txt", "unsupported_media_type"),
    ]


def test_requests_without_files_or_with_bad_options_get_400(server: LiveServer) -> None:
    error = error_of(post(server.url, [("file", ("a.png", encode(noise_image(0)), "image/png"))]), 400, "no_files")
    assert "'files'" in error["message"] and "file" in error["message"]
    bad = post(server.url, [png_part()], params={"faces": "sometimes"})
    assert "faces" in error_of(bad, 400, "invalid_request")["message"]
    error_of(httpx.get(f"{server.url}/nowhere"), 404, "not_found")


def test_the_api_key_guards_v1_only(small_server: LiveServer) -> None:
    files = [png_part()]
    missing = post(small_server.url, files)
    error_of(missing, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"] == "ApiKey"  # the challenge a 401 must carry
    wrong = post(small_server.url, files, headers={"X-API-Key": "wrong"})
    error_of(wrong, 401, "unauthorized")
    assert wrong.headers["WWW-Authenticate"] == "ApiKey"
    error_of(httpx.get(f"{small_server.url}/v1/model"), 401, "unauthorized")
    assert post(small_server.url, files, headers=KEY).status_code == 200
    assert httpx.get(f"{small_server.url}/v1/model", headers=KEY).status_code == 200
    health = httpx.get(f"{small_server.url}/healthz").json()
    assert health["status"] == "ok" and health["api_key_required"] is True
    assert httpx.get(f"{small_server.url}/").status_code == 200


class SlowDetector:
    """A detector that takes a second per batch (after the server's warm-up call)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.metadata = detector.metadata
        self.threshold = detector.threshold
        self.faces = "none"
        self.calls = 0

    def predict(self, inputs: list, *, faces: str | None = None) -> list[dict]:
        self.calls += 1
        if self.calls > 1:
            time.sleep(1.0)
        return self.detector.predict(inputs, faces=faces)

    def explain(self, image: Image.Image, *, faces: str | None = None) -> Image.Image:
        raise NotImplementedError


def test_a_slow_request_gets_504_and_the_server_carries_on(serve_detector: Detector) -> None:
    with LiveServer(create_app(SlowDetector(serve_detector), ServeLimits(timeout_s=0.3))) as live:
        started = time.perf_counter()
        error = error_of(post(live.url, [png_part()]), 504, "timeout")
        assert time.perf_counter() - started < 0.9 and "0.3 s" in error["message"]
        assert httpx.get(f"{live.url}/healthz").json()["status"] == "ok"
