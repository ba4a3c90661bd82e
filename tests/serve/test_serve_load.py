"""Concurrency: many clients at once are all answered correctly, in shared batches, with steady memory."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from dfkd.inference import Detector
from dfkd.serve import ServeLimits, create_app
from dfkd.serve.batcher import MicroBatcher
from tests.serve.helpers import LiveServer, encode, noise_image, rss_bytes

N_IMAGES = 8
N_THREADS = 8
N_REQUESTS = 200


def run_clients(url: str, payloads: list[bytes], n_requests: int) -> list[tuple[int, int, Any]]:
    """``n_requests`` POSTs from ``N_THREADS`` threads, each with its own connection; (image index, status, body)."""

    def client(thread: int) -> list[tuple[int, int, Any]]:
        answers = []
        with httpx.Client(base_url=url, timeout=60) as session:
            for request in range(thread, n_requests, N_THREADS):
                index = (request * 3 + thread) % len(payloads)
                files = [("files", (f"img{index}.png", payloads[index], "image/png"))]
                response = session.post("/v1/detect", files=files, params={"faces": "none"})
                answers.append((index, response.status_code, response.json()))
        return answers

    with ThreadPoolExecutor(N_THREADS) as pool:
        return [answer for answers in pool.map(client, range(N_THREADS)) for answer in answers]


def test_200_concurrent_requests_are_answered_correctly_in_batches_with_steady_memory(
    serve_detector: Detector,
) -> None:
    images = [noise_image(seed, (64 + 8 * seed, 64)) for seed in range(N_IMAGES)]
    payloads = [encode(image) for image in images]
    expected = [result["fake_prob"] for result in serve_detector.predict(images, faces="none")]
    gaps = sorted(expected)
    assert min(b - a for a, b in itertools.pairwise(gaps)) > 1e-3  # so a mix-up cannot pass unnoticed
    with LiveServer(create_app(serve_detector, ServeLimits(batch_window_ms=5))) as live:
        run_clients(live.url, payloads, 16)  # warm up: allocator pools, thread pools, connections
        rss_before = rss_bytes()
        started = time.perf_counter()
        answers = run_clients(live.url, payloads, N_REQUESTS)
        elapsed = time.perf_counter() - started
        rss_after = rss_bytes()
        stats = httpx.get(f"{live.url}/healthz").json()["batching"]
    assert len(answers) == N_REQUESTS
    for index, status, body in answers:
        assert status == 200, body
        (result,) = body["results"]
        assert result["input"] == f"img{index}.png"
        assert result["fake_prob"] == pytest.approx(expected[index], abs=1e-4)
    assert stats["largest_batch"] > 1, stats  # concurrent requests shared model calls
    assert stats["batches"] < stats["images"], stats
    growth = (rss_after - rss_before) / 2**20
    assert growth < 40, f"resident memory grew by {growth:.1f} MiB over {N_REQUESTS} requests"
    print(f"{N_REQUESTS} requests in {elapsed:.2f} s; batching {stats}; RSS growth {growth:.1f} MiB")


class RecordingDetector:
    """Records each predict call's size and options; scores by image width."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None]] = []
        self.lock = threading.Lock()
        self.metadata = {"threshold": 0.5}

    def predict(self, inputs: list[Image.Image], *, faces: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            self.calls.append((len(inputs), faces))
        return [{"input": "x", "status": "ok", "fake_prob": image.width / 1000, "faces": []} for image in inputs]

    def explain(self, image: Image.Image, *, faces: str | None = None) -> Image.Image:
        return image


def test_the_batcher_groups_jobs_by_options_and_never_holds_a_lone_request() -> None:
    detector = RecordingDetector()
    batcher = MicroBatcher(detector, window_s=2.0, max_batch=32)
    batcher.start()

    async def burst() -> list[list[dict[str, Any]]]:
        with batcher.arriving():  # as requests still decoding: the worker waits for them
            submitted = [
                batcher.submit([("a", Image.new("RGB", (10, 10))), ("b", Image.new("RGB", (20, 10)))], faces="none"),
                batcher.submit([("c", Image.new("RGB", (30, 10)))], faces="auto"),
                batcher.submit([("d", Image.new("RGB", (40, 10)))], faces="none"),
                batcher.submit([("e", Image.new("RGB", (50, 10)))], faces="none", explain=True),
            ]
        return [await batcher.collect(futures) for futures in submitted]

    async def lone() -> float:
        started = time.perf_counter()
        await batcher.predict([("f", Image.new("RGB", (60, 10)))], faces="none")
        return time.perf_counter() - started

    try:
        first, second, third, fourth = asyncio.run(burst())
        lone_seconds = asyncio.run(lone())
    finally:
        batcher.stop()
    assert [result["input"] for result in first] == ["a", "b"] and [r["fake_prob"] for r in first] == [0.01, 0.02]
    assert second[0]["input"] == "c" and second[0]["fake_prob"] == 0.03 and third[0]["fake_prob"] == 0.04
    assert fourth[0]["explain_png"]  # explained, in its own group
    assert sorted(detector.calls[:3]) == [(1, "auto"), (1, "none"), (3, "none")]  # one batch, three option groups
    assert detector.calls[3] == (1, "none") and lone_seconds < 1.0  # nobody on the way: no wait for the window
