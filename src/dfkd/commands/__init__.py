"""CLI command modules: each defines ``register(app)`` adding its commands to the Typer app (imports stay lazy)."""

FACE_MODEL_ENV = "DFKD_FACE_MODEL"  # only the CLI reads it; the library takes the path as an argument
