"""The HTTP service: a FastAPI app around a ``Detector`` (micro-batched, with limits) and a small upload page."""

from dfkd.serve.app import create_app
from dfkd.serve.server import ServeConfig, build_app, run_server

__all__ = ["ServeConfig", "build_app", "create_app", "run_server"]
