"""The YAML presets shipped with dfkd (package data), found by path or by name.

``configs/`` in a source checkout points here, so ``--config configs/demo_teacher.yaml`` works there; an installed
copy finds the same files by name: ``resolve_config("demo_teacher")``. ``python -m dfkd.configs`` lists them and
``python -m dfkd.configs NAME`` prints one's path.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SUFFIXES = (".yaml", ".yml")


def configs_dir() -> Path:
    """The folder holding the packaged presets (``DFKD_CONFIGS`` overrides it)."""
    env = os.environ.get("DFKD_CONFIGS")
    if env:
        return Path(env)
    # An installed package is a plain folder, so the traversable is a real path (zip imports are not supported).
    return Path(str(resources.files(__name__)))


def list_configs() -> list[str]:
    """Names (without suffix) of the presets available, sorted."""
    folder = configs_dir()
    return sorted(path.stem for path in folder.iterdir() if path.suffix in SUFFIXES) if folder.is_dir() else []


def resolve_config(name_or_path: str | os.PathLike[str]) -> Path:
    """An existing file as given; otherwise the packaged preset of that name.

    ``"demo_teacher"``, ``"demo_teacher.yaml"`` and ``"configs/demo_teacher.yaml"`` all name the same preset, so a
    command copied from the docs works from any folder.

    Raises:
        FileNotFoundError: neither a file nor a preset; the message lists the presets.
    """
    given = Path(name_or_path)
    if given.is_file():
        return given
    stem = given.name
    for suffix in SUFFIXES:
        stem = stem.removesuffix(suffix)
    folder = configs_dir()
    for suffix in SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    available = ", ".join(list_configs()) or "none"
    raise FileNotFoundError(f"config {str(name_or_path)!r} not found: not a file, nor a preset ({available})")
