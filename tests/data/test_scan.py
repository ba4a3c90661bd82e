"""Scanning folders into a manifest: layouts, labels, splits, determinism, rejects, leakage."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data import build_manifest, read_manifest, scan_roots
from dfkd.data.manifest import parse_ratios
from tests.conftest import make_tree, write_image


def test_140k_layout_maps_folders_to_labels_and_splits(tree_140k: Path, tmp_path: Path) -> None:
    report = build_manifest([tree_140k], tmp_path / "m.csv")
    counts = Counter((s.split, s.label) for s in report.samples)
    assert counts == {
        ("train", "real"): 7,
        ("train", "fake"): 7,
        ("val", "real"): 2,
        ("val", "fake"): 2,
        ("test", "real"): 1,
        ("test", "fake"): 1,
    }
    assert {s.source for s in report.samples} == {"140k"}
    assert report.other_files == 1  # the CSV beside the images is not an image


def test_capitalised_layout_and_merge_of_both_layouts(tree_140k: Path, tree_dfr: Path, tmp_path: Path) -> None:
    report = build_manifest([tree_140k, tree_dfr], tmp_path / "m.csv")
    by_source = Counter((s.source, s.split, s.label) for s in report.samples)
    assert by_source[("dfr", "train", "real")] == 6
    assert by_source[("dfr", "val", "fake")] == 3
    assert by_source[("dfr", "test", "fake")] == 2
    assert by_source[("140k", "train", "fake")] == 7
    assert len(report.samples) == 20 + 22


def test_nearest_label_folder_wins_and_extensions_any_case(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image(root / "fake" / "sub" / "REAL" / "a.JPG", 1)
    write_image(root / "Fake" / "b.PNG", 2, fmt="PNG")
    write_image(root / "real" / "c.webp", 3, fmt="WEBP")
    write_image(root / "real" / "d.Bmp", 4, fmt="BMP")
    write_image(root / "real" / "e.jpeg", 5, fmt="JPEG")
    (root / "real" / "notes.txt").write_text("not an image")
    found = scan_roots([root])
    labels = {Path(s.path).name: s.label for s in found.samples}
    assert labels == {"a.JPG": "real", "b.PNG": "fake", "c.webp": "real", "d.Bmp": "real", "e.jpeg": "real"}
    assert found.other_files == 1


def test_unlabelled_images_are_reported_not_guessed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 3, "misc": 2})
    report = build_manifest([root], tmp_path / "m.csv")
    assert len(report.samples) == 3
    assert len(report.unlabelled) == 2
    rejected = (tmp_path / "m.rejected.csv").read_text()
    assert "unlabelled" in rejected and "misc" in rejected


@pytest.mark.parametrize("name", ["val", "VALID", "Validation", "valid"])
def test_split_folder_names_any_case(tmp_path: Path, name: str) -> None:
    root = tmp_path / "data"
    make_tree(root, {f"{name}/real": 1, f"{name}/fake": 1})
    report = build_manifest([root], tmp_path / "m.csv")
    assert {s.split for s in report.samples} == {"val"}


def test_resplit_is_stratified_within_one_per_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 53, "fake": 31})
    report = build_manifest([root], tmp_path / "m.csv", ratios=(0.7, 0.2, 0.1), seed=3)
    counts = Counter((s.label, s.split) for s in report.samples)
    for label, n in (("real", 53), ("fake", 31)):
        for split, ratio in zip(("train", "val", "test"), (0.7, 0.2, 0.1), strict=True):
            assert abs(counts[(label, split)] - n * ratio) <= 1
        assert sum(counts[(label, s)] for s in ("train", "val", "test")) == n


def test_resplit_flag_overrides_split_folders(tree_140k: Path, tmp_path: Path) -> None:
    kept = build_manifest([tree_140k], tmp_path / "a.csv", seed=1)
    redone = build_manifest([tree_140k], tmp_path / "b.csv", seed=1, resplit=True, ratios=(0.5, 0.5, 0.0))
    assert Counter(s.split for s in kept.samples) == {"train": 14, "val": 4, "test": 2}
    assert Counter(s.split for s in redone.samples) == {"train": 10, "val": 10}


def test_same_inputs_and_seed_give_byte_identical_manifest(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 20, "fake": 20})
    build_manifest([root], tmp_path / "a.csv", seed=7)
    build_manifest([root], tmp_path / "b.csv", seed=7)
    build_manifest([root], tmp_path / "c.csv", seed=8)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_sidecar_records_version_ratios_seed_counts_and_hash(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 10, "fake": 10})
    report = build_manifest([root], tmp_path / "m.csv", seed=5)
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["seed"] == 5 and sidecar["ratios"] == [0.7, 0.2, 0.1]
    assert sidecar["content_hash"] == report.content_hash == read_manifest(tmp_path / "m.csv").content_hash
    assert sidecar["counts"]["train"]["real"]["data"] == 7
    assert "dfkd_version" in sidecar


def test_content_hash_changes_when_a_file_changes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 5, "fake": 5})
    first = build_manifest([root], tmp_path / "m.csv").content_hash
    write_image(root / "real" / "img_0000.jpg", seed=999, size=64)
    assert build_manifest([root], tmp_path / "m.csv").content_hash != first


def test_verify_rejects_corrupt_empty_and_non_image_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 4, "fake": 4})
    (root / "real" / "empty.jpg").write_bytes(b"")
    (root / "real" / "text.png").write_text("hello, not a png")
    good = (root / "fake" / "img_0000.jpg").read_bytes()
    (root / "fake" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    report = build_manifest([root], tmp_path / "m.csv", verify=True, workers=2)
    reasons = {Path(p).name: r for p, r in report.rejected}
    assert set(reasons) == {"empty.jpg", "text.png", "truncated.jpg"}
    assert "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["text.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert len(report.samples) == 8
    rows = (tmp_path / "m.rejected.csv").read_text()
    assert "truncated.jpg" in rows and "text.png" in rows
    manifest_paths = {Path(s.path).name for s in read_manifest(tmp_path / "m.csv").samples}
    assert not manifest_paths & set(reasons)


def test_empty_files_are_rejected_even_without_verify(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"real": 2})
    (root / "real" / "empty.jpg").write_bytes(b"")
    report = build_manifest([root], tmp_path / "m.csv")
    assert [Path(p).name for p, _ in report.rejected] == ["empty.jpg"]


def test_verify_reports_identical_files_in_different_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root, {"train/real": 3, "test/real": 2, "train/fake": 2})
    shutil.copy(root / "train" / "real" / "img_0000.jpg", root / "test" / "real" / "copy.jpg")
    report = build_manifest([root], tmp_path / "m.csv", verify=True)
    assert len(report.leakage) == 1
    assert "copy.jpg" in (tmp_path / "m.leakage.csv").read_text()


def test_bad_ratios_and_missing_root_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        parse_ratios("0.5,0.5,0.5")
    with pytest.raises(ValueError, match="three non-negative numbers"):
        parse_ratios("0.5,0.5")
    with pytest.raises(ValueError, match="sum to 1"):
        parse_ratios((float("nan"), 0.5, 0.5))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_manifest([tmp_path / "nope"], tmp_path / "m.csv")


def test_cli_scan_prints_summary_and_writes_files(tree_140k: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["-q", "scan", str(tree_140k), "--out", str(tmp_path / "m.csv"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "20 images" in result.output and "rejected 0" in result.output
    assert (tmp_path / "m.csv").exists() and (tmp_path / "m.json").exists()
    bad = CliRunner().invoke(app, ["scan", str(tree_140k), "--out", str(tmp_path / "x.csv"), "--ratios", "1,1,1"])
    assert bad.exit_code == 2 and "sum to 1" in bad.output


def test_two_roots_with_the_same_name_get_distinct_sources(tmp_path: Path) -> None:
    make_tree(tmp_path / "a" / "data", {"real": 1})
    make_tree(tmp_path / "b" / "data", {"fake": 1}, seed=2)
    found = scan_roots([tmp_path / "a" / "data", tmp_path / "b" / "data"])
    assert sorted(s.source for s in found.samples) == ["data", "data-2"]


def test_a_root_inside_another_is_refused_and_a_root_named_twice_is_scanned_once(tmp_path: Path) -> None:
    """S and S/real listed S/real's files twice, under two sources, free to land in two splits."""
    make_tree(tmp_path / "S", {"real": 2, "fake": 2})
    with pytest.raises(ValueError, match=r"dataset root .*S/real is inside root .*S: its images would be listed twice"):
        scan_roots([tmp_path / "S", tmp_path / "S" / "real"])
    found = scan_roots([tmp_path / "S", tmp_path / "S" / ".." / "S"])
    assert len(found.samples) == 4 and not found.skipped


def test_symbolic_link_loops_are_skipped_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for label in ("real", "fake"):
        write_image(root / "train" / label / "a.jpg", seed=1)
    (root / "train" / "real" / "self").symlink_to("self")  # ELOOP when followed
    (root / "train" / "fake" / "up").symlink_to("..")  # back to train/: would be walked again and again
    report = build_manifest([root], tmp_path / "m.csv")
    assert sorted(Path(s.path).relative_to(root.resolve()).as_posix() for s in report.samples) == [
        "train/fake/a.jpg",
        "train/real/a.jpg",
    ]
    reasons = {Path(path).name: reason for path, reason in report.skipped}
    assert set(reasons) == {"self", "up"} and "symbolic link" in reasons["self"] and "loop" in reasons["up"]
    rejected = (tmp_path / "m.rejected.csv").read_text()
    assert "train/fake/up,symbolic link loop" in rejected
    result = CliRunner().invoke(app, ["scan", str(root), "--out", str(tmp_path / "cli.csv")])
    assert result.exit_code == 0 and "folders skipped 2" in result.output, result.output


def test_file_names_that_are_not_utf8_are_scanned_and_round_trip(tmp_path: Path) -> None:
    import os

    root = tmp_path / "data"
    write_image(root / "train" / "real" / "a.jpg", seed=1)
    write_image(root / "train" / "fake" / "a.jpg", seed=2)
    odd = os.fsencode(root / "train" / "fake") + b"/caf\xe9.jpg"
    os.rename(os.fsencode(root / "train" / "fake" / "a.jpg"), odd)
    os.makedirs(os.fsencode(root) + b"/loose\xff")
    write_image(
        Path(os.fsdecode(os.fsencode(root) + b"/loose\xff/x.jpg")), seed=3
    )  # unlabelled: listed in rejected.csv
    result = CliRunner().invoke(app, ["scan", str(root), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    # Rule: the CSV holds the file system's bytes (UTF-8 where the name is UTF-8), read back with surrogateescape.
    assert odd in (tmp_path / "m.csv").read_bytes()
    assert b"/loose\xff/x.jpg" in (tmp_path / "m.rejected.csv").read_bytes()
    manifest = read_manifest(tmp_path / "m.csv")
    fake = next(s for s in manifest.samples if s.label == "fake")
    assert os.fsencode(fake.path) == odd and Path(fake.path).is_file()
    from dfkd.data.dataset import ManifestDataset
    from dfkd.data.transforms import build_eval_transform

    dataset = ManifestDataset(manifest, "train", build_eval_transform(40, 32, [0.5] * 3, [0.5] * 3), on_error="raise")
    assert all(dataset[i] is not None for i in range(len(dataset)))  # the odd file opens and decodes
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["n"] == 2


def test_sources_of_one_crop_folder_say_its_warnings_once(tmp_path: Path) -> None:
    from dfkd.data.crop_geometry import face_crop_of_roots

    record = {"complete": True, "detector": "yunet", "margin": 0.1, "size": 256, "warnings": ["framing differs"]}
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "crop.json").write_text(json.dumps(record))
    roots = [tmp_path / "faces" / name for name in ("a", "b", "c")]
    for root in roots:
        root.mkdir()
    settings, warnings = face_crop_of_roots(roots)
    assert settings == {"detector": "yunet", "margin": 0.1, "size": 256, "align": False}  # recorded before --align
    assert warnings == ["faces: framing differs"]
