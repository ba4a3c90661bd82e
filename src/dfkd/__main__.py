"""`python -m dfkd` runs the CLI."""

from dfkd.cli import app

app()
