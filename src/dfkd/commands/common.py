"""What every command shares: the two consoles, the red error exit, training's expected errors, the face model path.

It sits below the command modules (they import it; it imports none of them, nor ``dfkd.cli``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dfkd.utils import unwritable_reason

FACE_MODEL_ENV = "DFKD_FACE_MODEL"  # only the CLI reads it; the library takes the path as an argument

console = Console(stderr=True)  # messages and logging
out_console = Console()  # results
logger = logging.getLogger(__name__)


def shown(path: str | os.PathLike[str]) -> str:
    """A file name as the console can print it: bytes that are not UTF-8 as ``\\xe9`` escapes, markup escaped."""
    from rich.markup import escape

    return escape(os.fsencode(path).decode("utf-8", "backslashreplace"))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error in red and return the exit to raise. The message is text: file names in it may hold ``[``."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def training_errors() -> tuple[type[Exception], ...]:
    """What a training run raises for bad input (config, cache, teacher, model file, image): one red line, exit 2."""
    from dfkd.config import ConfigError
    from dfkd.data.images import ImageLoadError
    from dfkd.distill.logit_cache import CacheMismatchError
    from dfkd.models import ModelFileError
    from dfkd.train import TeacherGateError

    return ConfigError, CacheMismatchError, TeacherGateError, ModelFileError, ImageLoadError


def input_errors() -> tuple[type[Exception], ...]:
    """What the library raises for bad input: configs, files, images, model files, caches, face detectors, teachers."""
    from dfkd.faces.backends import FaceDetectorUnavailable

    return (ValueError, FileNotFoundError, FaceDetectorUnavailable, *training_errors())


@contextlib.contextmanager
def reported_errors(*extra: type[Exception], code: int = 2) -> Iterator[None]:
    """Turn bad-input errors (``input_errors`` and ``extra``) into one red line and exit ``code``, no traceback."""
    try:
        yield
    except Exception as error:
        if isinstance(error, (*input_errors(), *extra)):
            raise fail(str(error), code) from None
        raise


def face_model_path(face_model: Path | None) -> str | None:
    """The YuNet file given on the command line, else ``$DFKD_FACE_MODEL``, else None."""
    value = str(face_model) if face_model else os.environ.get(FACE_MODEL_ENV)
    return value or None


# The --model option of the commands that run a model: a file, or nothing for the bundled general detector.
ModelOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="dfkd model file (.safetensors) or exported .onnx (default: the bundled one)."),
]


# How the commands that score images find faces, and YuNet's file for it.
FacesOption = Annotated[
    str, typer.Option(help="auto (find faces first), none (inputs are face crops), or yunet / centerface / mtcnn.")
]
FaceModelOption = Annotated[
    Path | None, typer.Option(help=f"YuNet ONNX file (default: ${FACE_MODEL_ENV}); auto then uses YuNet.")
]


def model_or_bundled(model: Path | None) -> Path:
    """The model file given on the command line, else the bundled general detector (``dfkd.pretrained``)."""
    if model is not None:
        return model
    from dfkd.pretrained import default_model_path

    with reported_errors(FileNotFoundError):
        path = default_model_path()
    if logger.isEnabledFor(logging.INFO):  # a note, not a result: -q (warnings only) silences it
        console.print(f"no --model given: using the bundled general detector ({path.name}; `dfkd info` shows its card)")
    return path


def check_output(option: str, path: Path | None, *, folder: bool = False) -> None:
    """Exit 2 with ``error: OPTION PATH: reason`` when an output path given with ``option`` cannot be written."""
    if path is None:
        return
    problem = unwritable_reason(path, folder=folder)
    if problem is not None:
        raise fail(f"{option} {shown(path)}: {shown(problem)}")


def write_output(option: str, path: Path, write: Callable[[], object]) -> bool:
    """Run ``write``; when it fails (after the checks, the disk can still fill up), say so in one line, return False.

    The caller goes on with its other outputs, so one failed write does not lose them.
    """
    try:
        write()
    except OSError as error:
        console.print(f"[bold red]error:[/] {option} {shown(path)}: cannot write ({error.strerror or error})")
        return False
    return True
