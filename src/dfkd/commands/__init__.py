"""CLI command modules: each defines ``register(app)`` adding its commands to the Typer app (imports stay lazy)."""
