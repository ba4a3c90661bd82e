"""The `dfkd` command line: the Typer app, its root options (logging, version) and the command modules' commands.

Every command lives in ``dfkd.commands`` (one module per group, each a thin call into the library); this module only
assembles them, so it imports the commands and never the reverse.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from dfkd import __version__
from dfkd.commands import calibrate, data, demo, deploy, evaluate, info, realdata, serve, sweep, training
from dfkd.commands.common import console, out_console

# In the order `dfkd --help` lists them: data, training, the demo, then the other areas.
COMMAND_MODULES = (data, training, demo, deploy, calibrate, evaluate, info, realdata, serve, sweep)

app = typer.Typer(
    name="dfkd",
    help="Train lightweight deepfake face detectors by knowledge distillation, evaluate, export and detect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        out_console.print(f"dfkd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, warnings only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """dfkd: deepfake detection by knowledge distillation."""
    from dfkd.utils import enable_progress

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)], force=True
    )
    enable_progress(not quiet)


for _module in COMMAND_MODULES:
    for _name, _command in _module.COMMANDS.items():
        app.command(_name)(_command)

if __name__ == "__main__":
    app()
