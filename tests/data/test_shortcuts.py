"""dfkd scan warns when file size, or with --verify compression or pixel size, alone tells a source's classes apart."""

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


def _jpegs(folder: Path, count: int, *, quality: int, side: int = 32, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = rng.integers(0, 256, (side, side, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{seed}_{index}.jpg", quality=quality)


def test_scan_verify_warns_about_compression_and_pixel_size_that_tell_the_classes_apart(tmp_path: Path) -> None:
    from dfkd.data import build_manifest

    root = tmp_path / "data"
    _jpegs(root / "quality" / "real", 12, quality=95, seed=0)  # fakes saved at another JPEG quality
    _jpegs(root / "quality" / "fake", 12, quality=60, seed=1)
    _jpegs(root / "size" / "real", 12, quality=90, seed=2)  # fakes at another pixel size
    _jpegs(root / "size" / "fake", 12, quality=90, side=40, seed=3)
    _jpegs(root / "part" / "real", 20, quality=90, seed=4)  # half of the fakes saved another way
    _jpegs(root / "part" / "fake", 10, quality=90, seed=5)
    _jpegs(root / "part" / "fake", 10, quality=50, seed=6)
    _jpegs(root / "even" / "real", 12, quality=90, seed=7)  # saved alike: nothing to say
    _jpegs(root / "even" / "fake", 12, quality=90, seed=8)
    build_manifest([root], tmp_path / "m.csv", verify=True)
    warnings = json.loads((tmp_path / "m.json").read_text())["file_encoding_warnings"]
    by_source = {
        source: [line for line in warnings if line.startswith(f"data/{source}: ")]
        for source in ("quality", "size", "part", "even")
    }
    assert any("the compression alone tells real from fake (AUC 1.00)" in line for line in by_source["quality"])
    assert not any("pixel size" in line for line in by_source["quality"])
    assert any("the pixel size alone tells real from fake (AUC 1.00)" in line for line in by_source["size"])
    assert not any("compression" in line for line in by_source["size"])
    assert any("10 of 20 fake files (50%) have a compression no real file has" in line for line in by_source["part"])
    assert by_source["even"] == []
    # Without --verify no file is read, so nothing is said either way.
    build_manifest([root], tmp_path / "n.csv")
    assert json.loads((tmp_path / "n.json").read_text())["file_encoding_warnings"] is None


def test_scan_verify_warns_about_sizes_that_all_differ_but_split_the_classes(tmp_path: Path) -> None:
    """Large genuine photos against small fakes, no two files of one size: exact sizes compared said nothing."""
    from dfkd.data import build_manifest

    root = tmp_path / "data"
    for index in range(12):
        _jpegs(root / "sizes" / "real", 1, quality=90, side=64 + index, seed=index)
        _jpegs(root / "sizes" / "fake", 1, quality=90, side=32 + index, seed=100 + index)
        _jpegs(root / "mixed" / "real", 1, quality=90, side=32 + 2 * index, seed=200 + index)  # interleaved sizes
        _jpegs(root / "mixed" / "fake", 1, quality=90, side=33 + 2 * index, seed=300 + index)
    build_manifest([root], tmp_path / "m.csv", verify=True)
    warnings = json.loads((tmp_path / "m.json").read_text())["file_encoding_warnings"]
    assert any(line.startswith("data/sizes: the pixel size alone tells real from fake (AUC 1.00)") for line in warnings)
    assert not any(line.startswith("data/mixed: ") for line in warnings)
