"""The service's settings are declared once (CLI defaults, app and /v1/model agree) and answers follow their schemas."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import typer
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError
from typer.testing import CliRunner

from dfkd.cli import app as cli_app
from dfkd.serve import ServeLimits, ServeSettings, create_app
from dfkd.serve.settings import MIB
from tests.serve.helpers import LiveServer, encode, noise_image


def serve_option_defaults() -> dict[str, Any]:
    command = typer.main.get_command(cli_app).commands["serve"]  # type: ignore[attr-defined]
    return {param.name: param.default for param in command.params}


def test_the_serve_options_default_to_the_settings_defaults() -> None:
    defaults, limits = serve_option_defaults(), ServeLimits()
    assert defaults["max_request_mb"] * MIB == limits.max_request_bytes
    assert defaults["timeout"] == limits.timeout_s
    assert (defaults["header_timeout"], defaults["keep_alive"]) == (limits.header_timeout_s, limits.keep_alive_s)
    names = ("max_files", "max_pixels", "batch_window_ms", "max_batch", "max_request_pixels", "max_pixels_in_flight")
    for name in (*names, "max_queue", "max_connections"):
        assert defaults[name] == getattr(limits, name), name


def test_the_model_endpoint_reports_the_limits_the_app_enforces(server: LiveServer) -> None:
    body = httpx.get(f"{server.url}/v1/model").json()
    assert body["limits"] == ServeLimits().model_dump()


def test_impossible_limits_are_refused_by_the_settings_and_the_cli(tmp_path: Any) -> None:
    with pytest.raises(ValidationError, match="max_files"):
        ServeLimits(max_files=0)
    with pytest.raises(ValidationError, match="timeout_s"):
        ServeLimits(timeout_s=0)
    with pytest.raises(ValidationError, match="could never be admitted"):
        ServeLimits(max_request_pixels=10, max_pixels_in_flight=5)
    result = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path / "m.safetensors"), "--max-files", "0"])
    assert result.exit_code == 2 and "--max-files" in result.output
    for value in ("inf", "nan"):  # inf would pass ge=0, and a batch window of inf stopped the batch thread
        with pytest.raises(ValidationError, match="batch_window_ms"):
            ServeLimits(batch_window_ms=float(value))
        for option in ("--batch-window-ms", "--max-request-mb", "--timeout"):
            result = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path / "m.safetensors"), option, value])
            assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output, result.output


def test_settings_travel_to_worker_processes_as_json() -> None:
    settings = ServeSettings(model="m.safetensors", workers=3, limits=ServeLimits(max_files=2, timeout_s=1.5))
    assert ServeSettings.model_validate_json(settings.model_dump_json()) == settings


class BrokenDetector:
    """Answers results that break the response schema (a fake probability that is no number)."""

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {"architecture": "broken"}
        self.threshold = 0.5
        self.faces = "none"

    def predict(self, inputs: list, *, faces: str | None = None) -> list[dict[str, Any]]:
        return [{"input": "x", "status": "ok", "fake_prob": "very"} for _ in inputs]

    def explain(self, image: Image.Image, *, faces: str | None = None) -> Image.Image:
        raise NotImplementedError


def test_an_answer_that_breaks_its_schema_becomes_a_json_500() -> None:
    with TestClient(create_app(BrokenDetector()), raise_server_exceptions=False) as client:
        files = [("files", ("a.png", encode(noise_image(1)), "image/png"))]
        response = client.post("/v1/detect", files=files)
        health = client.get("/healthz")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert health.status_code == 200 and health.json()["model"] == "broken"


def test_the_openapi_schema_names_each_answer(server: LiveServer) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path, method, model in (
        ("/v1/detect", "post", "DetectResponse"),
        ("/v1/model", "get", "ModelInfo"),
        ("/healthz", "get", "Health"),
    ):
        schema = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(f"/{model}"), (path, schema)


def test_the_service_frames_faces_as_the_model_card_says(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from dfkd.models import create_model, save_model
    from dfkd.serve.server import build_app
    from dfkd.serve.settings import ServeSettings

    path = tmp_path / "cropped.safetensors"
    save_model(create_model("resnet8_fast"), path, {"face_crop": {"detector": "centerface", "margin": 0.0, "size": 64}})
    card_margin = build_app(ServeSettings(model=str(path), faces="none"))
    with TestClient(card_margin) as client:
        assert client.get("/v1/model").json()["metadata"]["face_crop"]["margin"] == 0.0
    assert card_margin.state.service.detector.margin == 0.0
    assert build_app(ServeSettings(model=str(path), faces="none", margin=0.3)).state.service.detector.margin == 0.3
