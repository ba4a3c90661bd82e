"""Detection reports: the JSON document and the CSV table that ``dfkd detect --json / --csv`` write.

JSON (``JSON_SCHEMA_VERSION`` 1): ``{schema, dfkd_version, model, architecture, backend, precision, threshold,
faces, face_margin, summary: {n_inputs, ok, no_face, error, called_fake}, results: [...]}`` where each result is a
Detector result (videos add ``frames``, ``n_frames``, ``sample_fps`` and ``aggregation``). CSV: one row per input
with ``CSV_COLUMNS``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dfkd import __version__
from dfkd.card import ModelCard
from dfkd.utils import PATH_ERRORS, atomic_write, write_json

JSON_SCHEMA_VERSION = 1
SCORED_STATUSES = ("ok", "no_face")  # the results that carry a score and a label: no_face items are scored whole
CSV_COLUMNS: tuple[str, ...] = (
    "input",
    "kind",
    "status",
    "label",
    "fake_prob",
    "threshold",
    "n_faces",
    "max_face_fake_prob",
    "n_frames",
    "error",
)


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Counts of inputs by status, and of those called fake (at the threshold each result records)."""
    counts = Counter(result["status"] for result in results)
    return {
        "n_inputs": len(results),
        "ok": counts["ok"],
        "no_face": counts["no_face"],
        "error": counts["error"],
        "called_fake": sum(result.get("label") == "fake" for result in results),
    }


def build_report(
    results: Sequence[dict[str, Any]],
    *,
    model: str,
    card: ModelCard,
    faces: str,
    backend: str,
    margin: float | None = None,
) -> dict[str, Any]:
    """The JSON report document."""
    return {
        "schema": JSON_SCHEMA_VERSION,
        "dfkd_version": __version__,
        "model": model,
        "architecture": card.architecture.name,
        "backend": backend,
        "precision": (card.export or {}).get("precision", "fp32"),
        "threshold": card.threshold,
        "faces": faces,
        "face_margin": margin,
        "summary": summarise(results),
        "results": list(results),
    }


# A spreadsheet runs a cell that starts with one of these as a formula (`=HYPERLINK(...)`): CSV injection.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert_path(path: str) -> str:
    """``path`` as a cell no spreadsheet runs: a relative name that starts like a formula gets ``./``, the same file."""
    return os.path.join(os.curdir, path) if path.startswith(FORMULA_STARTS) else path


def _inert_text(text: str) -> str:
    """``text`` as a cell no spreadsheet runs: one that starts like a formula gets a leading ``'``."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def csv_row(result: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of a result (probabilities rounded to 6 decimals, empty cells for missing values). Names and errors
    that a spreadsheet would run as formulas are made inert."""
    face_probs = [face["fake_prob"] for face in result.get("faces", []) if face.get("fake_prob") is not None]
    row = {
        "input": _inert_path(result["input"]),
        "kind": result.get("kind", "image"),
        "status": result["status"],
        "label": result.get("label") or "",
        "fake_prob": "" if result.get("fake_prob") is None else round(result["fake_prob"], 6),
        "threshold": result.get("threshold", ""),
        "n_faces": len(result.get("faces", [])),
        "max_face_fake_prob": round(max(face_probs), 6) if face_probs else "",
        "n_frames": result.get("n_frames", ""),
        "error": _inert_text(result.get("error") or ""),
    }
    return row


def write_report_json(path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Write the JSON report atomically."""
    write_json(path, report)


def write_report_csv(path: str | os.PathLike[str], results: Sequence[dict[str, Any]]) -> None:
    """Write the CSV table atomically; input names that are not UTF-8 keep their bytes (utils.PATH_ERRORS)."""
    with atomic_write(path, "w", encoding="utf-8", errors=PATH_ERRORS, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for result in results:
            writer.writerow(csv_row(result))
