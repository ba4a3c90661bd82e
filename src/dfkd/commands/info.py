"""CLI: info — print a model's card (what it is, how it frames and preprocesses faces, where it cuts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dfkd.commands.common import fail, model_or_bundled, out_console


def info(
    model: Annotated[
        Path | None, typer.Argument(help="dfkd model file (.safetensors) or exported .onnx (default: the bundled one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False,
) -> None:
    """Print a model's card: architecture, preprocessing, face crop, labels, threshold, metrics, training."""
    from dfkd.card import ModelFileError, describe_card

    model = model_or_bundled(model)
    try:
        card = _read_card(model)
    except ModelFileError as error:
        raise fail(str(error)) from None
    if as_json:
        out_console.print_json(json.dumps(card.to_json_dict()))
        return
    table = Table(title=str(model), show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field, value in describe_card(card):
        table.add_row(field, value)
    out_console.print(table)


def _read_card(path: Path):
    from dfkd.deploy.onnx_format import read_onnx_card

    if path.suffix.lower() == ".onnx":
        return read_onnx_card(path)
    from dfkd.models.checkpoint import read_model_card

    return read_model_card(path)


COMMANDS = {"info": info}
