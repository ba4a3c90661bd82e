"""`dfkd export` with outputs that stand in the way and calibration inputs that are not manifests.

Each is refused in one line before anything is written (no stray fp32 file, no temporary file).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfkd.cli import app

runner = CliRunner()


def _squeezed(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines at the terminal width, even inside a path


def _export(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["export", *args])
    assert "Traceback" not in result.output and not isinstance(result.exception, (OSError, AttributeError))
    return result.exit_code, _squeezed(result.output)


@pytest.mark.parametrize(("blocker", "reason"), [("folder", "is a directory"), ("file", "is not a folder")])
def test_an_output_that_cannot_be_written_is_refused_first(
    tmp_path: Path, tiny_model: Path, blocker: str, reason: str
) -> None:
    if blocker == "folder":  # `--out ex` where ex is a folder
        out = tmp_path / "ex"
        out.mkdir()
    else:  # `--out existing.txt/a.onnx`
        (tmp_path / "existing.txt").write_text("x")
        out = tmp_path / "existing.txt" / "a.onnx"
    code, output = _export(str(tiny_model), "--out", str(out))
    assert code == 2 and _squeezed(f"--out {out}") in output and _squeezed(reason) in output
    assert len(list(tmp_path.iterdir())) == 1  # no temporary file left beside it


def test_int8_refuses_a_folder_where_its_fp32_file_goes(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "h.fp32.onnx").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split,source\na.jpg,real,val,s\n")
    out = tmp_path / "ex" / "h.onnx"
    code, output = _export(str(tiny_model), "--out", str(out), "--int8", "--calibration", str(manifest))
    assert code == 2 and _squeezed("h.fp32.onnx: is a directory") in output


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.txt", "just some notes\n", "missing column(s)"),
        ("header.csv", "path,label,split,source,size\n", "has no images"),
        ("train_only.csv", "path,label,split,source\na.jpg,real,train,s\n", "has no val images"),
        ("short.csv", "path,label,split,source\nx.jpg,real\n", "short.csv:2: row has 2 field(s)"),
        ("data", None, "is a folder, not a manifest CSV"),
    ],
)
def test_a_calibration_that_is_not_a_usable_manifest_is_refused_before_writing(
    tmp_path: Path, tiny_model: Path, name: str, content: str | None, reason: str
) -> None:
    calibration = tmp_path / name
    if content is None:
        calibration.mkdir()
    else:
        calibration.write_text(content)
    out = tmp_path / "ex" / "h.onnx"
    code, output = _export(str(tiny_model), "--out", str(out), "--int8", "--calibration", str(calibration))
    assert code == 2 and "--calibration" in output and _squeezed(reason) in output
    assert not (tmp_path / "ex").exists()  # not even the fp32 file
