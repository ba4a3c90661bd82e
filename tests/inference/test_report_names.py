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
