"""The HTTP service: a FastAPI app around a ``Detector`` (micro-batched, with limits) and a small upload page.

Names load lazily, so that reading the settings (``dfkd serve``'s option defaults) does not import FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfkd.serve.app import create_app
    from dfkd.serve.server import build_app, run_server
    from dfkd.serve.settings import ServeLimits, ServeSettings

_EXPORTS = {
    "ServeLimits": "dfkd.serve.settings",
    "ServeSettings": "dfkd.serve.settings",
    "create_app": "dfkd.serve.app",
    "build_app": "dfkd.serve.server",
    "run_server": "dfkd.serve.server",
}

__all__ = ["ServeLimits", "ServeSettings", "build_app", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
