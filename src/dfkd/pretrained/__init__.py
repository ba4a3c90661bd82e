"""The general detector dfkd ships: a resnet8_fast student (under 1 MB) trained on every real and fake face of
dfkd's development data plus self-blended fakes, used by ``dfkd detect``, ``dfkd serve`` and ``Detector.load()`` when
no model is given. Its card (``dfkd info`` with no model) states what it was trained on, how well it detects sources
it never saw, its blind spots and the command that retrains it."""

from __future__ import annotations

from pathlib import Path

GENERAL_MODEL = "general_resnet8_fast.safetensors"


def default_model_path() -> Path:
    """The bundled general detector's model file.

    Raises:
        FileNotFoundError: the package was installed without it.
    """
    path = Path(__file__).with_name(GENERAL_MODEL)
    if not path.is_file():
        raise FileNotFoundError(f"the bundled general detector is missing ({path}); pass a model file (--model)")
    return path
