"""dfkd scan warns when file size alone tells the classes of a source apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _save(folder: Path, count: int, *, noisy: bool, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = rng.integers(0, 256, (32, 32, 3)) if noisy else np.full((32, 32, 3), index * 7 % 256)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")


def test_scan_warns_about_a_source_whose_classes_differ_in_file_size(tmp_path: Path) -> None:
    from dfkd.data import build_manifest

    root = tmp_path / "data"
    _save(root / "swaps" / "real", 12, noisy=True, seed=0)  # detailed reals, flat fakes: size tells them apart
    _save(root / "swaps" / "fake", 12, noisy=False, seed=1)
    _save(root / "fair" / "real", 12, noisy=True, seed=2)  # both detailed: nothing to say
    _save(root / "fair" / "fake", 12, noisy=True, seed=3)
    _save(root / "few" / "real", 12, noisy=True, seed=4)  # too few fakes for a figure
    _save(root / "few" / "fake", 3, noisy=False, seed=5)
    build_manifest([root], tmp_path / "m.csv")
    warnings = json.loads((tmp_path / "m.json").read_text())["file_size_warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("data/swaps: file size alone tells real from fake (AUC 1.00")

    # Sources given as separate roots are named by their folders.
    build_manifest([root / "swaps", root / "fair"], tmp_path / "n.csv")
    warnings = json.loads((tmp_path / "n.json").read_text())["file_size_warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("swaps: ")
