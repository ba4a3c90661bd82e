"""ManifestDataset and its loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd.data import ImageLoadError, ManifestDataset, build_eval_transform, build_loader, build_manifest, read_manifest
from tests.conftest import make_tree


def _manifest(tmp_path: Path) -> Path:
    make_tree(tmp_path / "data", {"train/real": 3, "train/fake": 4, "val/real": 1, "val/fake": 1})
    build_manifest([tmp_path / "data"], tmp_path / "m.csv")
    return tmp_path / "m.csv"


def test_dataset_yields_image_label_index_with_fake_one(tmp_path: Path) -> None:
    manifest = read_manifest(_manifest(tmp_path))
    dataset = ManifestDataset(manifest, "train", build_eval_transform(48, 32))
    assert len(dataset) == 7
    for index in range(len(dataset)):
        image, label, position = dataset[index]
        assert image.shape == (3, 32, 32) and position == index
        expected = 1.0 if "/fake/" in dataset.samples[index].path else 0.0
        assert label.item() == expected


def test_loader_batches_and_keeps_indices(tmp_path: Path) -> None:
    manifest = read_manifest(_manifest(tmp_path))
    loader = build_loader(ManifestDataset(manifest, "train", build_eval_transform(48, 32)), batch_size=4)
    batches = list(loader)
    images, labels, _ = batches[0]
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.float32
    assert torch.cat([b[2] for b in batches]).tolist() == list(range(7))


def test_corrupt_file_raises_naming_it_or_is_skipped_and_counted(tmp_path: Path) -> None:
    manifest_path = _manifest(tmp_path)
    broken = tmp_path / "data" / "train" / "fake" / "img_0001.jpg"
    broken.write_bytes(b"garbage")
    manifest = read_manifest(manifest_path)
    strict = ManifestDataset(manifest, "train", build_eval_transform(48, 32))
    with pytest.raises(ImageLoadError, match="img_0001.jpg"):
        list(build_loader(strict, batch_size=8))
    lenient = ManifestDataset(manifest, "train", build_eval_transform(48, 32), on_error="skip")
    seen = sum(len(b[2]) for b in build_loader(lenient, batch_size=8) if b is not None)
    assert seen == len(lenient) - 1


def test_worker_loader_matches_in_process_loader(tmp_path: Path) -> None:
    manifest = read_manifest(_manifest(tmp_path))
    dataset = ManifestDataset(manifest, "train", build_eval_transform(48, 32))
    serial = torch.cat([b[0] for b in build_loader(dataset, batch_size=3)])
    parallel = torch.cat([b[0] for b in build_loader(dataset, batch_size=3, num_workers=2)])
    assert torch.equal(serial, parallel)


def test_manifest_with_bad_rows_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,split,source\na.jpg,maybe,train,x\n")
    with pytest.raises(ValueError, match="bad.csv:2: label"):
        read_manifest(bad)
    (tmp_path / "cols.csv").write_text("file,label\n")
    with pytest.raises(ValueError, match="missing column"):
        read_manifest(tmp_path / "cols.csv")
