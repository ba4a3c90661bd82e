"""The service sheds load: decoded pixels are budgeted per request and per server, a full queue answers 503 with
Retry-After, memory falls back after a burst, and slow clients cannot hold connections."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

from dfkd.commands.serve import listening_on
from dfkd.inference import Detector
from dfkd.serve import ServeLimits, create_app
from dfkd.serve.server import uvicorn_options
from tests.serve.helpers import LiveServer, encode, rss_bytes

SIDE = 1024  # each test image: 1 megapixel, a few KiB as PNG
LIMITS = ServeLimits(
    max_files=4,
    max_request_pixels=4 * SIDE * SIDE,
    max_pixels_in_flight=8 * SIDE * SIDE,  # two full requests
    max_queue=16,  # the pixels bind first here; test_the_batcher_admits_whole_requests_within_both_limits checks this
    timeout_s=20,
)
N_CLIENTS = 12


class SlowDetector:
    """The real detector, slowed so that concurrent requests pile up; checks the budget at every model call."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.metadata, self.faces, self.threshold = detector.metadata, "none", detector.threshold
        self.batcher: Any = None
        self.peak_pixels = 0

    def predict(self, inputs: list[Any], *, faces: str | None = None) -> list[dict[str, Any]]:
        if self.batcher is not None:
            self.peak_pixels = max(self.peak_pixels, self.batcher.in_flight[1])
        time.sleep(0.25)
        return self.detector.predict(inputs, faces=faces)

    def explain(self, image: Image.Image, *, faces: str | None = None) -> Image.Image:
        raise NotImplementedError


def flat_png(shade: int, side: int = SIDE) -> bytes:
    gradient = Image.linear_gradient("L").resize((side, side)).point(lambda value: (value + shade) % 256)
    return encode(gradient.convert("RGB"))


def test_a_burst_is_shed_with_503_retry_after_within_the_pixel_budget_and_memory_falls_back(
    serve_detector: Detector,
) -> None:
    detector = SlowDetector(serve_detector)
    app = create_app(detector, LIMITS)
    detector.batcher = app.state.service.batcher
    payloads = [flat_png(shade) for shade in range(4)]
    files = [("files", (f"{index}.png", payload, "image/png")) for index, payload in enumerate(payloads)]
    with LiveServer(app, **uvicorn_options(LIMITS)) as live:
        too_many = httpx.post(f"{live.url}/v1/detect", files=[*files[:3], ("files", ("big.png", flat_png(0, 1100)))])
        httpx.post(f"{live.url}/v1/detect", files=files[:1], timeout=30)  # warm up
        rss_before = rss_bytes()
        barrier = threading.Barrier(N_CLIENTS)

        def client(_: int) -> httpx.Response:
            with httpx.Client(base_url=live.url, timeout=30) as session:
                barrier.wait()
                return session.post("/v1/detect", files=files, params={"faces": "none"})

        started = time.perf_counter()
        with ThreadPoolExecutor(N_CLIENTS) as pool:
            answers = list(pool.map(client, range(N_CLIENTS)))
        elapsed = time.perf_counter() - started
        time.sleep(0.3)
        health = httpx.get(f"{live.url}/healthz").json()
        rss_after = rss_bytes()
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_pixels", too_many.text
    statuses = sorted(answer.status_code for answer in answers)
    shed = [answer for answer in answers if answer.status_code == 503]
    assert set(statuses) == {200, 503}, statuses  # no 504: refused at once rather than left to time out
    assert len(shed) >= N_CLIENTS // 2, statuses  # at most two requests fit the budget at a time
    for answer in shed:
        assert answer.json()["error"]["code"] == "overloaded"
        assert int(answer.headers["Retry-After"]) >= 1
    for answer in answers:
        if answer.status_code == 200:
            assert [result["status"] for result in answer.json()["results"]] == ["ok"] * 4
    assert 0 < detector.peak_pixels <= LIMITS.max_pixels_in_flight
    assert health["in_flight_images"] == 0 and health["in_flight_pixels"] == 0, health
    assert health["batching"]["rejected"] == len(shed), health
    assert health["batching"]["trims"] >= 1, health  # memory handed back once the burst was over
    growth = (rss_after - rss_before) / 2**20
    assert growth < 64, f"resident memory grew by {growth:.1f} MiB after the burst"
    assert elapsed < 20
    print(f"{statuses.count(200)} answered, {len(shed)} shed in {elapsed:.1f} s; RSS growth {growth:.1f} MiB")


def test_the_batcher_admits_whole_requests_within_both_limits() -> None:
    from dfkd.serve.batcher import MicroBatcher, QueueFull

    class Stuck:
        def predict(self, inputs: list[Any], *, faces: str | None = None) -> list[dict[str, Any]]:
            time.sleep(0.5)
            return [{"status": "ok"} for _ in inputs]

    batcher = MicroBatcher(Stuck(), window_s=0.0, max_batch=1, max_queue=3, max_pixels=100)
    batcher.start()
    refusals: list[str] = []

    async def submit_all() -> None:
        batcher.submit([("a", b"x"), ("b", b"x")], faces="none", pixels=[40, 40])
        for images, pixels in (([("c", b"x")] * 2, [1, 1]), ([("d", b"x")], [30])):
            try:
                batcher.submit(images, faces="none", pixels=pixels)
            except QueueFull as error:
                refusals.append(error.reason)
        assert batcher.in_flight == (2, 80)  # the refused requests counted nothing

    try:
        asyncio.run(submit_all())
    finally:
        batcher.stop()
    assert refusals == [
        "server busy: 2 images are queued (the limit is 3)",
        "server busy: 80 decoded pixels are queued (the limit is 100)",
    ]
    assert batcher.in_flight == (0, 0) and batcher.stats.rejected == 2


def read_until_closed(sock: socket.socket, trickle: bytes, deadline_s: float) -> float | None:
    """Send ``trickle`` a byte every 0.2 s; the seconds until the server closed the connection, or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    for byte in trickle:
        if time.monotonic() - started > deadline_s:
            return None
        try:
            sock.send(bytes([byte]))
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_a_slow_loris_client_is_cut_off_after_the_header_timeout(serve_detector: Detector) -> None:
    limits = ServeLimits(header_timeout_s=1.0, keep_alive_s=1.0)
    with LiveServer(create_app(serve_detector, limits), **uvicorn_options(limits)) as live:
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
            closed_after = read_until_closed(sock, trickle, deadline_s=6.0)
        with httpx.Client(base_url=live.url) as session:  # a finished request: idle, then cut off as well
            assert session.get("/healthz").status_code == 200
            connection_answered = session.get("/healthz").status_code
    assert closed_after is not None and closed_after < 4.0, closed_after
    assert connection_answered == 200


def test_the_cli_says_where_it_listens() -> None:
    assert listening_on("0.0.0.0", 8000) == "all interfaces (0.0.0.0), port 8000"
    assert listening_on("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert listening_on("::1", 81) == "http://[::1]:81/"


def test_a_large_png_is_decoded_without_a_full_size_rgb_copy() -> None:
    """Peak memory of a scaled decode of a 6000x6000 greyscale PNG stays near its 36 MB of grey pixels (the full
    RGB copy alone would be 108 MB)."""
    script = """
import io, resource, sys
from PIL import Image
from dfkd.data.images import decode_image
buffer = io.BytesIO(); Image.new("L", (6000, 6000), 0).save(buffer, format="PNG"); data = buffer.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
decoded = decode_image(data, min_short_side=72)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(*decoded.image.size, *decoded.full_size, (after - before) // 1024)
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    *sizes, peak_mib = (int(word) for word in output.stdout.split())
    assert sizes == [72, 72, 6000, 6000], output.stdout
    assert peak_mib < 64, f"decoding took {peak_mib} MiB above the baseline"
