"""Hostile manifests (short rows, binary files, bad sizes) and output paths that stand in the way.

Each is one error naming the manifest, the line and the reason (or the option and the path), never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data.manifest import read_manifest
from tests.conftest import make_tree
from tests.inference.helpers import make_tiny_model

runner = CliRunner()
HEADER = "path,label,split,source,size\n"


def _squeezed(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines at the terminal width, even inside a path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("path,label,split,source\nx.jpg,real\n", r"short\.csv:2: row has 2 field\(s\), the header names 4"),
        (HEADER + "x.jpg,real,train,s,1,extra\n", r"short\.csv:2: row has 6 field\(s\), the header names 5"),
        (HEADER + "a.jpg,real,train,s,1\nb.jpg,fake,val,s,big\n", r"short\.csv:3: size 'big' is not a whole number"),
        (HEADER + "a.jpg,real,train,s,1\nb.jpg,re\rx,val,s,1\n", r"short\.csv:3: not a readable manifest CSV"),
        (HEADER + ",real,train,s,1\n", r"short\.csv:2: path is empty"),
    ],
)
def test_a_bad_row_is_named_with_its_line(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "short.csv"
    path.write_bytes(body.encode())
    with pytest.raises(ValueError, match=expected):
        read_manifest(path)


def test_blank_lines_and_a_missing_size_still_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("path,label,split,source\n\na.jpg,real,train,s\n\nb.jpg,fake,test,s\n")
    assert [sample.size for sample in read_manifest(path).samples] == [-1, -1]


def test_a_binary_file_is_not_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "binm.csv"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\r\x00\x03\x00>\x00\x01\n\x00\x00\x00\x10\x00\x00\r\x00\x00\x00")
    with pytest.raises(ValueError, match=r"binm\.csv"):
        read_manifest(path)


def test_a_folder_is_not_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is a folder, not a manifest CSV"):
        read_manifest(tmp_path)


def test_evaluate_reports_a_short_row_in_one_line(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    manifest = tmp_path / "short.csv"
    manifest.write_text("path,label,split,source\nx.jpg,real\n")
    result = runner.invoke(app, ["evaluate", str(model), "--manifest", str(manifest), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert _squeezed("short.csv:2: row has 2 field(s)") in _squeezed(result.output)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_evaluate_refuses_an_output_folder_it_cannot_make_before_predicting(tmp_path: Path, where: str) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    out = existing if where == "file" else existing / "ev"
    # The manifest is not even read: the output is checked first.
    args = ["evaluate", str(tmp_path / "m.safetensors"), "--manifest", str(tmp_path / "m.csv"), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert _squeezed(f"--out {out}") in _squeezed(result.output)
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_crop_faces_refuses_an_output_folder_it_cannot_make(tmp_path: Path, where: str) -> None:
    root = make_tree(tmp_path / "src", {"train/real": 1})
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    out = a_file if where == "file" else a_file / "crops"
    result = runner.invoke(app, ["crop-faces", str(root), "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert _squeezed(f"--out {out}") in _squeezed(result.output)
    assert a_file.read_text() == "keep me"
