"""The manifest: one CSV row per image (path, label, split, source, size), split and stamped with a content hash."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfkd import __version__
from dfkd.data.scan import SPLITS, Sample
from dfkd.labels import label_id
from dfkd.utils import PATH_ERRORS, atomic_write, write_json

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "source", "size")
DEFAULT_RATIOS: tuple[float, float, float] = (0.7, 0.2, 0.1)


@dataclass(frozen=True)
class Manifest:
    """A read manifest: its rows and the hash of the CSV bytes they came from."""

    samples: tuple[Sample, ...]
    content_hash: str
    path: str | None = None

    def split(self, name: str) -> list[Sample]:
        """Rows of one split (``train``, ``val`` or ``test``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        return [sample for sample in self.samples if sample.split == name]

    @property
    def sources(self) -> list[str]:
        """The distinct sources, sorted."""
        return sorted({sample.source for sample in self.samples})

    def labels(self, name: str) -> list[int]:
        """Integer labels (fake = 1) of one split, in row order."""
        return [label_id(sample.label) for sample in self.split(name)]


def parse_ratios(text: str | tuple[float, ...] | list[float]) -> tuple[float, float, float]:
    """Parse ``"0.7,0.2,0.1"`` into three non-negative ratios (train, val, test) that sum to 1."""
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        values = []
    # NaN passes every comparison, so finiteness is asked first.
    valid = len(values) == 3 and all(math.isfinite(v) and v >= 0 for v in values)
    if not valid or abs(sum(values) - 1.0) > 1e-6:
        shown = text if isinstance(text, str) else ",".join(map(str, text))
        raise ValueError(f"expected three non-negative numbers that sum to 1, like 0.7,0.2,0.1, got {shown!r}")
    return values[0], values[1], values[2]


def _split_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Largest-remainder allocation of ``n`` items to three splits (counts differ from n*ratio by < 1)."""
    exact = [n * r for r in ratios]
    counts = [int(np.floor(x)) for x in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _group_seed(seed: int, key: str) -> list[int]:
    # A per-group stream: adding a source never reshuffles the others.
    return [seed, int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)]


def assign_splits(
    samples: list[Sample], *, ratios: tuple[float, float, float] = DEFAULT_RATIOS, seed: int = 42, resplit: bool = False
) -> list[Sample]:
    """Give every sample a split: keep split folders unless ``resplit``, else stratify by (source, label)."""
    keep = [s for s in samples if s.split is not None and not resplit]
    todo = [s for s in samples if s.split is None or resplit]
    groups: dict[tuple[str, str], list[Sample]] = {}
    for sample in todo:
        groups.setdefault((sample.source, sample.label), []).append(sample)
    assigned: list[Sample] = list(keep)
    for (source, label), group in sorted(groups.items()):
        group = sorted(group, key=lambda s: s.path)
        order = np.random.default_rng(_group_seed(seed, f"{source}\0{label}")).permutation(len(group))
        counts = _split_counts(len(group), ratios)
        bounds = np.cumsum([0, *counts])
        for split_index, split in enumerate(SPLITS):
            for position in order[bounds[split_index] : bounds[split_index + 1]].tolist():
                old = group[position]
                assigned.append(Sample(old.path, old.label, split, old.source, old.size))
    assigned.sort(key=lambda s: (s.path, s.source))
    return assigned


def manifest_bytes(samples: list[Sample]) -> bytes:
    """The manifest CSV exactly as written (sorted rows, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for sample in samples:
        writer.writerow([sample.path, sample.label, sample.split, sample.source, sample.size])
    return buffer.getvalue().encode("utf-8", PATH_ERRORS)


def sidecar_path(manifest_path: str | os.PathLike[str]) -> Path:
    """``manifest.csv`` → ``manifest.json`` (the sidecar with version, ratios, seed, counts and hash)."""
    return Path(manifest_path).with_suffix(".json")


def count_table(samples: list[Sample] | tuple[Sample, ...]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts as ``{split: {label: {source: n}}}``."""
    counter = Counter((s.split, s.label, s.source) for s in samples)
    table: dict[str, dict[str, dict[str, int]]] = {}
    for (split, label, source), n in sorted(counter.items(), key=lambda kv: tuple(map(str, kv[0]))):
        table.setdefault(str(split), {}).setdefault(label, {})[source] = n
    return table


def write_manifest(path: str | os.PathLike[str], samples: list[Sample], info: dict) -> str:
    """Write the CSV atomically and its JSON sidecar; return the content hash (SHA-256 of the CSV bytes)."""
    data = manifest_bytes(samples)
    content_hash = hashlib.sha256(data).hexdigest()
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    sidecar = {
        "dfkd_version": __version__,
        "content_hash": content_hash,
        "n": len(samples),
        "counts": count_table(samples),
        **info,
    }
    write_json(sidecar_path(path), sidecar)
    return content_hash


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest CSV; a missing column or a bad label/split is an error naming the row."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise FileNotFoundError(f"cannot read manifest {path}: is a folder, not a manifest CSV") from None
    except OSError as error:
        raise FileNotFoundError(f"cannot read manifest {path}: {error.strerror or error}") from None
    reader = csv.DictReader(io.StringIO(data.decode("utf-8", PATH_ERRORS)))
    try:
        samples = _read_rows(path, reader)
    except csv.Error as error:  # a binary or mangled file: a stray carriage return inside a field, and the like
        # csv counts only the lines it finished, so the bad one is the next; its advice about newline modes is
        # for programmers, not for whoever wrote the file.
        reason = str(error).split(" - ")[0]
        raise ValueError(f"{path}:{reader.line_num + 1}: not a readable manifest CSV ({reason})") from None
    return Manifest(samples=tuple(samples), content_hash=hashlib.sha256(data).hexdigest(), path=str(path))


def _read_rows(path: Path, reader: csv.DictReader) -> list[Sample]:
    """The checked samples of a manifest's rows; a bad row is a ValueError naming ``path``, the line and the reason."""
    missing = [c for c in ("path", "label", "split", "source") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: not a dfkd manifest, missing column(s) {', '.join(missing)}")
    n_columns = len(reader.fieldnames or [])
    samples = []
    first_line: dict[str, int] = {}  # each image's first row: listed twice it would count twice, or sit in two splits
    base = path.parent
    for row in reader:
        line = reader.line_num
        # DictReader fills the columns a short row lacks with None and files a long row's extras under None: either
        # way the values no longer sit under their column names (an unquoted comma in a path, a cut-off line).
        extra = row.pop(None, None) or []
        n_fields = sum(value is not None for value in row.values()) + len(extra)
        if n_fields != n_columns:
            raise ValueError(f"{path}:{line}: row has {n_fields} field(s), the header names {n_columns}")
        label, split = row["label"].strip().lower(), row["split"].strip().lower()
        if label not in ("real", "fake"):
            raise ValueError(f"{path}:{line}: label {row['label']!r} is not 'real' or 'fake'")
        if split not in SPLITS:
            raise ValueError(f"{path}:{line}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
        image_path = row["path"]
        if not image_path.strip():
            raise ValueError(f"{path}:{line}: path is empty")
        if not os.path.isabs(image_path):
            image_path = str(base / image_path)
        size_text = (row.get("size") or "").strip()
        try:
            size = int(size_text) if size_text else -1
        except ValueError:
            raise ValueError(f"{path}:{line}: size {row['size']!r} is not a whole number of bytes") from None
        if size < -1:  # -1: not known (scan could not stat the file)
            raise ValueError(f"{path}:{line}: size {size} is negative")
        key = os.path.normpath(image_path)
        if key in first_line:
            raise ValueError(f"{path}:{line}: {row['path']} is listed again (first at line {first_line[key]})")
        first_line[key] = line
        samples.append(Sample(path=image_path, label=label, split=split, source=row["source"], size=size))
    return samples


def read_sidecar(path: str | os.PathLike[str]) -> dict:
    """The JSON sidecar of a manifest, or ``{}`` when there is none."""
    sidecar = sidecar_path(path)
    return json.loads(sidecar.read_text()) if sidecar.exists() else {}


def manifest_face_crop(path: str | os.PathLike[str]) -> tuple[dict | None, list[str]]:
    """The face-crop settings a manifest's images were made with (from ``dfkd scan`` of crop-faces output) and
    the framing warnings recorded with them; ``(None, [])`` for whole images or manifests without a sidecar."""
    sidecar = read_sidecar(path)
    return sidecar.get("face_crop"), list(sidecar.get("face_crop_warnings") or [])
