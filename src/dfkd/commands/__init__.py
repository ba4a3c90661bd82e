"""CLI command modules, one per command group: each defines ``register(app)`` adding its commands to the Typer app.

``dfkd.cli`` assembles them; they share ``dfkd.commands.common`` and never import ``dfkd.cli``. Library imports stay
inside the command functions, so ``dfkd --help`` stays fast.
"""
