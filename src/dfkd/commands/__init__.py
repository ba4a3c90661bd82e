"""CLI command modules: each defines ``register(app)`` adding its commands to the Typer app (imports stay lazy)."""

import os
from pathlib import Path

FACE_MODEL_ENV = "DFKD_FACE_MODEL"  # only the CLI reads it; the library takes the path as an argument


def face_model_path(face_model: Path | None) -> str | None:
    """The YuNet file given on the command line, else ``$DFKD_FACE_MODEL``, else None."""
    value = str(face_model) if face_model else os.environ.get(FACE_MODEL_ENV)
    return value or None
