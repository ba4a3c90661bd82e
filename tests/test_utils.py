"""Shared helpers: atomic writes keep the umask's file mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from dfkd.models import create_model, save_model
from dfkd.utils import atomic_write, save_tensors, write_json


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process's umask for the test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_mode_the_umask_gives(tmp_path: Path, umask, mask: int, mode: int) -> None:
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_write(tmp_path / "b.csv", "w", encoding="utf-8") as handle:
        handle.write("path\n")
    save_tensors({"logits": torch.zeros(3)}, tmp_path / "c.safetensors")
    save_model(create_model("resnet8"), tmp_path / "d.safetensors")
    for name in ("a.json", "b.csv", "c.safetensors", "d.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.json", "b.csv", "c.safetensors", "d.safetensors"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    with pytest.raises(RuntimeError), atomic_write(target, "w", encoding="utf-8") as handle:
        handle.write("{broken")
        raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "x": 1\n}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["a.json"]
