"""Load on `dfkd serve` over loopback: requests/s and latency (p50 / p95) at several client concurrencies.

Usage: python benchmarks/serve_load.py [--model MODEL | --arch resnet8_fast --input-size 224] [--concurrency 1,4,16,32]
                                       [--seconds 8]
                                       [--faces none] [--threads N] [--workers 1] [--max-batch 32,8,1] [--out FILE]

The server is a real `dfkd serve` subprocess on 127.0.0.1 at a free port (nothing leaves the machine); the load
comes from this process: ``concurrency`` asyncio clients, each sending one image per request back to back (closed
loop). Without --model a randomly initialised --arch model (default resnet8_fast, 224x224 input) is served: speed does
not depend on the weights. The image is a face from ../shared/data/realfaces-dev when present, else a synthetic
256x256 JPEG.
--max-batch 32,8,1 compares servers with those batch limits (1: micro-batching off), measured in turns. Client and
server share the CPU, so the numbers are end-to-end for this machine, not the server alone.

--flood runs issue 19's attacks instead, against one server with its default limits, and prints the server's
resident memory (before, peak, 3 s after) and the answers by status: one request of --flood-files black PNGs of
--flood-side² (default 16 of 6300²), the same cut to fit the per-request pixel budget, and --flood-clients
concurrent requests of 16 black PNGs of 1600² (default 64).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REALFACES = ROOT.parent / "shared" / "data" / "realfaces-dev"


def default_model(folder: Path, arch: str, input_size: int | None) -> Path:
    """A randomly initialised ``arch`` model file: its default preprocessing, or ``input_size`` (resize 8/7 of it)."""
    import torch

    from dfkd.models import create_model, default_preprocessing, save_model

    torch.manual_seed(0)
    path = folder / f"{arch}.safetensors"
    preprocessing = default_preprocessing(arch)
    if input_size:
        preprocessing = {**preprocessing, "input_size": input_size, "resize_size": round(input_size * 8 / 7)}
    save_model(create_model(arch), path, {"preprocessing": preprocessing})
    return path


def test_image() -> tuple[str, bytes]:
    """A face JPEG from realfaces-dev, else a synthetic one."""
    faces = sorted(REALFACES.rglob("*.jpg")) if REALFACES.is_dir() else []
    if faces:
        return faces[0].name, faces[0].read_bytes()
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return "synthetic.jpg", buffer.getvalue()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    """`dfkd serve` on 127.0.0.1:port; returns once /healthz answers."""
    command = [sys.executable, "-m", "dfkd", "-q", "serve", "--model", str(model), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dfkd serve exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("dfkd serve did not start within 180 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Interrupt the server and wait for it."""
    process.send_signal(2)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def measure_level(url: str, image: tuple[str, bytes], concurrency: int, seconds: float, faces: str) -> dict:
    """Closed-loop load from ``concurrency`` clients for ``seconds``: requests/s, latency percentiles, errors."""
    name, data = image
    latencies: list[float] = []
    server_ms: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one() -> tuple[float, float]:
            started = time.perf_counter()
            response = await client.post(
                "/v1/detect", files=[("files", (name, data, "image/jpeg"))], params={"faces": faces}
            )
            if response.status_code != 200 or response.json()["results"][0]["status"] == "error":
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            return time.perf_counter() - started, float(response.json()["elapsed_ms"])

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up: connections, pools
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                try:
                    latency, on_server = await one()
                except (RuntimeError, httpx.HTTPError):
                    errors += 1
                else:
                    latencies.append(latency)
                    server_ms.append(on_server)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        stats = (await client.get("/healthz")).json().get("batching", {})

    def percentile(values: list[float], fraction: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / elapsed,
        "latency_ms_p50": 1000.0 * percentile(latencies, 0.50),
        "latency_ms_p95": 1000.0 * percentile(latencies, 0.95),
        "latency_ms_mean": 1000.0 * statistics.fmean(latencies) if latencies else float("nan"),
        # Time inside the handler (reading the upload, decoding, queueing, scoring): the rest is HTTP and client.
        "server_ms_p50": percentile(server_ms, 0.50),
        "server_ms_p95": percentile(server_ms, 0.95),
        "server_batching": stats,
    }


def run_levels(servers: dict[str, int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every concurrency level against every server (by label and port), interleaved so drifting background load
    affects each configuration alike."""
    rows = []
    for concurrency in args.concurrency:
        for label, port in servers.items():
            url = f"http://127.0.0.1:{port}"
            row = asyncio.run(measure_level(url, args.image, concurrency, args.seconds, args.faces))
            row["config"] = label
            rows.append(row)
            print(
                f"{label:>9}  c={concurrency:<3}  {row['requests_per_s']:7.1f} req/s"
                f"  p50 {row['latency_ms_p50']:7.1f} ms  p95 {row['latency_ms_p95']:7.1f} ms"
                f"  (in handler p95 {row['server_ms_p95']:7.1f} ms)  errors {row['errors']}",
                flush=True,
            )
    return rows


def server_rss_mib(pid: int) -> float:
    """A process's resident memory, MiB (from /proc)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def black_png(side: int) -> bytes:
    """A black RGB PNG of side² pixels: a few KiB of upload, side² x 3 bytes once decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def flood_round(port: int, pid: int, label: str, requests: list[list[tuple[str, bytes]]]) -> dict[str, Any]:
    """Send ``requests`` (each a list of files) at once; statuses, seconds and the server's RSS before/peak/after."""
    url = f"http://127.0.0.1:{port}"
    before = server_rss_mib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], server_rss_mib(pid))

    async def send_all() -> list[int]:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

            async def one(files: list[tuple[str, bytes]]) -> int:
                parts = [("files", (name, data, "image/png")) for name, data in files]
                try:
                    return (await client.post("/v1/detect", files=parts, params={"faces": "none"})).status_code
                except httpx.HTTPError:
                    return 0

            return list(await asyncio.gather(*(one(files) for files in requests)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    statuses = asyncio.run(send_all())
    elapsed = time.perf_counter() - started
    time.sleep(3.0)
    done.set()
    sampler.join()
    after = server_rss_mib(pid)
    row = {"round": label, "statuses": dict(Counter(statuses)), "seconds": round(elapsed, 2)}
    row.update(rss_mib_before=round(before), rss_mib_peak=round(peak[0]), rss_mib_after=round(after))
    print(
        f"{label}: statuses {row['statuses']} in {elapsed:.1f} s; server RSS {before:.0f} MiB before, "
        f"{peak[0]:.0f} peak, {after:.0f} 3 s after",
        flush=True,
    )
    return row


def run_flood(model: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Issue 19's memory attacks against one server with the default limits."""
    from dfkd.serve.settings import ServeLimits

    port = free_port()
    process = start_server(model, port, ["--faces", "none"])
    try:
        big, small = black_png(args.flood_side), black_png(1600)
        fits = max(1, ServeLimits().max_request_pixels // (args.flood_side**2))
        rounds = [
            (f"1 request of {args.flood_files} x {args.flood_side}²", [[("big.png", big)] * args.flood_files]),
            (f"1 request of {fits} x {args.flood_side}² (within budget)", [[("big.png", big)] * fits]),
            (f"{args.flood_clients} requests of 16 x 1600²", [[("small.png", small)] * 16] * args.flood_clients),
        ]
        return [flood_round(port, process.pid, label, requests) for label, requests in rounds]
    finally:
        stop_server(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model file (default: a random --arch model)")
    parser.add_argument("--arch", default="resnet8_fast", help="architecture of the default model")
    parser.add_argument("--input-size", type=int, help="input side of the default model (default: the arch's, 224)")
    parser.add_argument("--threads", type=int, help="the server's PyTorch threads (dfkd serve --threads)")
    parser.add_argument("--concurrency", default="1,4,16,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per level")
    parser.add_argument("--faces", default="none", choices=("none", "auto"))
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--max-batch", default="32", help="comma-separated server --max-batch values to compare (1: no batching)"
    )
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument("--flood", action="store_true", help="run issue 19's memory attacks instead (see above)")
    parser.add_argument("--flood-files", type=int, default=16)
    parser.add_argument("--flood-side", type=int, default=6300)
    parser.add_argument("--flood-clients", type=int, default=64)
    args = parser.parse_args()
    args.concurrency = [int(value) for value in args.concurrency.split(",")]
    args.image = test_image()
    model_name = args.model or f"random {args.arch} at {args.input_size or 224} px"
    print(
        f"cpu cores {os.cpu_count()}; model {model_name}; image {args.image[0]} ({len(args.image[1]):,} bytes); "
        f"faces={args.faces}; server threads {args.threads or 'default'}; workers {args.workers}"
    )
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or default_model(Path(folder), args.arch, args.input_size)
        if args.flood:
            rows = run_flood(model, args)
            if args.out:
                args.out.write_text(json.dumps({"model": str(model_name), "flood": rows}, indent=2))
            return
        common = ["--faces", args.faces, "--workers", str(args.workers)]
        if args.threads:
            common += ["--threads", str(args.threads)]
        configs = {f"batch<={size}": [*common, "--max-batch", size] for size in args.max_batch.split(",")}
        ports = {label: free_port() for label in configs}
        processes = []
        try:
            for label, extra in configs.items():
                processes.append(start_server(model, ports[label], extra))
            rows = run_levels(ports, args)
        finally:
            for process in processes:
                stop_server(process)
    if args.out:
        summary = {"model": str(model_name), "faces": args.faces, "threads": args.threads, "workers": args.workers}
        args.out.write_text(json.dumps({**summary, "rows": rows}, indent=2))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
