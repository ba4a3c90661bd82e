"""scan --verify names images filed both as real and as fake: identical bytes cannot carry both labels."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from dfkd.data import build_manifest
from tests.conftest import make_tree


def test_identical_files_under_real_and_fake_are_reported_as_label_conflicts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    make_tree(root, {"train/real": 3, "train/fake": 3})
    shutil.copy(root / "train" / "real" / "img_0001.jpg", root / "train" / "fake" / "also_fake.jpg")
    shutil.copy(root / "train" / "real" / "img_0002.jpg", root / "train" / "real" / "same_label_copy.jpg")
    with caplog.at_level(logging.WARNING):
        report = build_manifest([root], tmp_path / "m.csv", verify=True)
    # The copy under the same label is a duplicate, not a conflict; only the real/fake pair is one.
    assert [sorted(member.split(":")[0] for member in members) for _, members in report.label_conflicts] == [
        ["fake", "real"]
    ]
    assert "also_fake.jpg" in caplog.text and "filed as real and as fake" in caplog.text
    assert json.loads((tmp_path / "m.json").read_text())["n_label_conflicts"] == 1


def test_without_verify_label_conflicts_are_unknown_not_zero(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"train/real": 2, "train/fake": 2})
    report = build_manifest([root], tmp_path / "m.csv")
    assert report.label_conflicts == []
    assert json.loads((tmp_path / "m.json").read_text())["n_label_conflicts"] is None
