"""CLI command modules, one per command group: each lists its commands in ``COMMANDS`` (name → function).

``dfkd.cli`` assembles them; they share ``dfkd.commands.common`` and never import ``dfkd.cli``. Library imports stay
inside the command functions, so ``dfkd --help`` stays fast.
"""
