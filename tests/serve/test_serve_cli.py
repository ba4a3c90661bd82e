"""`dfkd serve` as a real subprocess: it loads the model, listens on the port and honours DFKD_API_KEY."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.serve.helpers import encode, noise_image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dfkd_serve_answers_over_http_with_the_key_from_the_environment(serve_model: Path) -> None:
    port = free_port()
    env = {**os.environ, "DFKD_API_KEY": "from-env"}
    command = [sys.executable, "-m", "dfkd", "-q", "serve", "--model", str(serve_model), "--port", str(port)]
    process = subprocess.Popen([*command, "--faces", "none"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "dfkd serve did not come up"
            time.sleep(0.3)
        files = [("files", ("a.png", encode(noise_image(7)), "image/png"))]
        assert httpx.post(f"{url}/v1/detect", files=files, timeout=30).status_code == 401
        response = httpx.post(f"{url}/v1/detect", files=files, headers={"X-API-Key": "from-env"}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["status"] == "ok"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.returncode == 0
    output = process.stdout.read().decode() if process.stdout else ""
    # -q: warnings only, so neither uvicorn's startup lines nor its access lines.
    assert "Application startup complete" not in output and "POST /v1/detect" not in output, output


def test_dfkd_serve_fails_clearly_on_a_missing_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dfkd.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 2 and "model file not found" in result.output
