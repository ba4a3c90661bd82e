"""Small shared helpers: seeding, atomic writes, hashing, progress bars."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# File names that are not valid UTF-8 (``caf\xe9.jpg``) are decoded as Python decodes them (``os.fsdecode``: each
# undecodable byte becomes a lone surrogate) and written to CSV files as UTF-8 with this error handler, which writes
# the original bytes back: the CSV holds the file system's exact bytes and reads back (same handler) to the same path.
# JSON (``write_json``, ASCII-escaped) keeps them as ``\udcXX`` escapes, which ``json.load`` returns unchanged.
PATH_ERRORS = "surrogateescape"

_PROGRESS_ENABLED = False


def enable_progress(enabled: bool = True) -> None:
    """Turn rich progress bars on or off for library loops (the CLI turns them on)."""
    global _PROGRESS_ENABLED
    _PROGRESS_ENABLED = enabled


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate with a rich progress bar when progress is enabled, silently otherwise."""
    if not _PROGRESS_ENABLED:
        yield from iterable
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and move it into place only when the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle_fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(handle_fd, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get what open() would give
        with os.fdopen(handle_fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def unwritable_reason(path: str | os.PathLike[str], *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) could not be written, or None when nothing stands in the way.

    Commands and the trainer check their outputs before any work, so a wrong output path costs a second, not a whole
    run's results.
    """
    path = Path(path)
    if folder and path.is_dir():
        ancestor = path  # the files go into it
    elif path.exists() or path.is_symlink():
        if folder:
            return "is not a folder"
        if path.is_dir():
            return "is a directory"
        if path.exists() and not path.is_file():  # a device or a pipe: the atomic rename would replace it
            return "is not a regular file"
        ancestor = path.parent
    else:
        ancestor = path.parent
    # Missing folders are created when written (atomic_write, the trainer), so the nearest existing one decides.
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot write in {ancestor}: permission denied"
    return None


def save_tensors(tensors: dict[str, Any], path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """Write ``{name: tensor}`` (and string ``metadata``) as one ``.safetensors`` file, atomically."""
    import safetensors.torch

    data = safetensors.torch.save({name: tensor.contiguous() for name, tensor in tensors.items()}, metadata=metadata)
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def current_umask() -> int:
    """The process's file-creation mask (read from /proc where it can be, so no other thread sees it change)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically, pretty-printed with sorted keys (stable bytes for the same data)."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sigmoid(logits: Any) -> Any:
    """Logistic function in NumPy, safe for any float logit (fake logits → fake probabilities)."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, dtype=np.float64), -500, 500)))


def lazy_exports(package: str, exports: dict[str, str]) -> Any:
    """A module ``__getattr__`` importing each export's module (``{name: "dfkd.x.y"}``) on first use, so a package
    can list its API without importing heavy dependencies (torch) for callers that need only a light part."""
    import importlib

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
