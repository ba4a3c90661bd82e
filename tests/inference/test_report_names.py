"""Detection reports keep input names that are not UTF-8, losslessly, in CSV and JSON."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from dfkd.inference.report import write_report_csv, write_report_json
from dfkd.utils import PATH_ERRORS


def test_reports_round_trip_names_that_are_not_utf8(tmp_path: Path) -> None:
    name = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.jpg")
    results = [{"input": name, "status": "ok", "label": "fake", "fake_prob": 0.9, "threshold": 0.5, "faces": []}]
    write_report_csv(tmp_path / "r.csv", results)
    assert os.fsencode(name) in (tmp_path / "r.csv").read_bytes()  # the file system's bytes
    with open(tmp_path / "r.csv", newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        assert next(csv.DictReader(handle))["input"] == name
    write_report_json(tmp_path / "r.json", {"results": results})
    assert "\\udce9" in (tmp_path / "r.json").read_text(encoding="ascii")  # escaped: the JSON stays valid
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["input"] == name


def test_csv_cells_that_would_run_as_formulas_are_inert(tmp_path: Path) -> None:
    """A file named like a formula stays the same file (`./` in front) and an error starting like one is quoted."""
    name = '=HYPERLINK("http://evil.example","click").png'
    results = [
        {"input": name, "status": "ok", "label": "real", "fake_prob": 0.1, "threshold": 0.5, "faces": []},
        {"input": "-x.jpg", "status": "error", "error": "=1+1", "faces": []},
        {"input": "/abs/=a.jpg", "status": "error", "error": "cannot decode", "faces": []},
    ]
    write_report_csv(tmp_path / "r.csv", results)
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["input"] for row in rows] == [os.path.join(".", name), os.path.join(".", "-x.jpg"), "/abs/=a.jpg"]
    assert [row["error"] for row in rows] == ["", "'=1+1", "cannot decode"]
    assert all(not value.startswith(("=", "+", "-", "@")) for row in rows for value in row.values())
