"""Find labelled face images under one or more dataset roots.

Label = the nearest ancestor folder named ``real`` or ``fake``; split = an ancestor named ``train``, ``valid``,
``val``, ``validation`` or ``test`` (any case); source = the root the file was found under. This reads both Kaggle
layouts of REFERENCE.md (``real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}`` and
``Dataset/{Train,Validation,Test}/{Real,Fake}``) and any merge of them given as several roots.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dfkd.data.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "val",
    "val": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
LABEL_FOLDERS: dict[str, str] = {"real": "real", "fake": "fake"}
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image found by the scan. ``split`` is ``None`` when no split folder is above it."""

    path: str
    label: str
    split: str | None
    source: str
    size: int


@dataclass
class ScanResult:
    """Everything a scan found: labelled samples, unlabelled images, other files, and paths skipped with a reason."""

    samples: list[Sample] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    other_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # (st_dev, st_ino) of every folder walked: a symlink back to one of them is a loop, walked once only
    visited: set[tuple[int, int]] = field(default_factory=set, repr=False)

    def skip(self, path: str, reason: str) -> None:
        """Record ``path`` as skipped and say so in the log."""
        logger.warning("skipped %s: %s", path, reason)
        self.skipped.append((path, reason))


def source_names(roots: list[Path]) -> list[str]:
    """Name each root by its folder name, made unique with a numeric suffix when two roots share a name."""
    names: list[str] = []
    for root in roots:
        base = root.name or str(root)
        name, index = base, 2
        while name in names:
            name, index = f"{base}-{index}", index + 1
        names.append(name)
    return names


def _folder_role(parts: tuple[str, ...], table: dict[str, str]) -> str | None:
    """The role of the deepest folder in ``parts`` that appears in ``table`` (case-insensitive)."""
    for part in reversed(parts):
        role = table.get(part.lower())
        if role is not None:
            return role
    return None


def path_label(relative: str) -> str:
    """``real`` / ``fake`` from the nearest labelled folder of a relative path, or ``""`` when there is none."""
    return _folder_role(tuple(Path(relative).parts[:-1]), LABEL_FOLDERS) or ""


def scan_root(root: Path, source: str, result: ScanResult) -> None:
    """Walk one root (sorted, so results are deterministic) and append what it holds to ``result``.

    File names are kept as Python decodes them (``os.fsdecode``: bytes that are not UTF-8 become lone surrogates), so
    every file is found and its path round-trips through the manifest (see :mod:`dfkd.data.manifest`). A folder
    reached again through a symbolic link (a loop) and a link that cannot be followed are skipped and reported.
    """
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    _scan_folder(str(root), (root.name,), source, result)


def _is_folder(entry: os.DirEntry, result: ScanResult) -> bool | None:
    """Whether ``entry`` is a folder not walked yet; None when it is to be skipped (a loop or a broken link)."""
    try:
        if not entry.is_dir():
            return False
        info = entry.stat()
    except OSError as error:  # ELOOP: a link to itself; EACCES, ...
        result.skip(entry.path, f"cannot follow: {error.strerror or error}")
        return None
    key = (info.st_dev, info.st_ino)
    if key in result.visited:
        result.skip(entry.path, "symbolic link loop (a folder already scanned)")
        return None
    return True


def _scan_folder(folder: str, parts: tuple[str, ...], source: str, result: ScanResult) -> None:
    try:
        info = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        result.skip(folder, f"cannot list: {error.strerror or error}")
        return
    result.visited.add((info.st_dev, info.st_ino))
    label = _folder_role(parts, LABEL_FOLDERS)
    split = _folder_role(parts, SPLIT_FOLDERS)
    subfolders = []
    for entry in entries:
        is_folder = _is_folder(entry, result)
        if is_folder is None:
            continue
        if is_folder:
            subfolders.append(entry)
            continue
        name = entry.name
        dot = name.rfind(".")
        if dot < 0 or name[dot:].lower() not in IMAGE_EXTENSIONS:
            result.other_files += 1
            continue
        path = folder + os.sep + name
        if label is None:
            result.unlabelled.append(path)
            continue
        try:
            size = entry.stat().st_size
        except OSError as error:
            logger.warning("cannot stat %s: %s", path, error)
            size = -1
        result.samples.append(Sample(path, label, split, source, size))
    for entry in subfolders:
        _scan_folder(entry.path, (*parts, entry.name), source, result)


def scan_roots(roots: list[str | os.PathLike[str]]) -> ScanResult:
    """Scan several dataset roots; each becomes one ``source`` of a merged dataset."""
    if not roots:
        raise ValueError("no dataset root given")
    resolved: dict[Path, Path] = {}  # resolved → as given; a root named twice is scanned once
    for root in roots:
        resolved.setdefault(Path(root).resolve(), Path(root))
    for inner, outer in itertools.permutations(resolved, 2):
        if outer in inner.parents:
            raise ValueError(
                f"dataset root {resolved[inner]} is inside root {resolved[outer]}: its images would be listed twice, "
                "under two sources (and could land in two splits); give one of them"
            )
    result = ScanResult()
    for root, name in zip(resolved.values(), source_names(list(resolved)), strict=True):
        scan_root(root, name, result)
    return result
