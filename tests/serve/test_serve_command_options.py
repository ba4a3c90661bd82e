"""`dfkd serve`'s options as the command hands them on: -q quiets uvicorn, and --threads says what it sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.serve.settings import ServeSettings


def served_settings(monkeypatch: pytest.MonkeyPatch, arguments: list[str]) -> ServeSettings:
    """The settings `dfkd ... serve ...` would run the server with (nothing is loaded or served)."""
    import dfkd.serve.server as server

    seen: list[ServeSettings] = []
    monkeypatch.setattr(server, "build_app", lambda settings: object())
    monkeypatch.setattr(server, "run_server", lambda settings, app=None: seen.append(settings))
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    return settings


def test_quiet_serve_runs_uvicorn_at_warning_level(monkeypatch: pytest.MonkeyPatch, serve_model: Path) -> None:
    arguments = ["serve", "--model", str(serve_model)]
    assert served_settings(monkeypatch, ["-q", *arguments]).log_level == "warning"
    assert served_settings(monkeypatch, arguments).log_level == "info"


@pytest.mark.parametrize(("level", "access_log"), [("warning", False), ("info", True)])
def test_run_server_drops_the_access_log_below_info(
    monkeypatch: pytest.MonkeyPatch, level: str, access_log: bool
) -> None:
    import uvicorn

    from dfkd.serve.server import run_server

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    run_server(ServeSettings(model="unused.safetensors", log_level=level), app=object())  # type: ignore[arg-type]
    (options,) = calls
    assert options["log_level"] == level and options["access_log"] is access_log


def test_threads_help_names_both_runtimes_and_the_decoding() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "onnxruntime" in text and "decoding" in text
