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
    # A hand-merged manifest listing one image twice (here as real in train and fake in test) leaked silently.
    (tmp_path / "twice.csv").write_text("path,label,split,source\n/x/a.jpg,real,train,s\n/x/./a.jpg,fake,test,s\n")
    with pytest.raises(ValueError, match=r"twice.csv:3: /x/./a.jpg is listed again \(first at line 2\)"):
        read_manifest(tmp_path / "twice.csv")
    (tmp_path / "size.csv").write_text("path,label,split,source,size\n/x/a.jpg,real,train,s,-7\n")
    with pytest.raises(ValueError, match="size.csv:2: size -7 is negative"):
        read_manifest(tmp_path / "size.csv")


def _face_jpegs(tmp_path: Path, side: int = 256) -> Path:
    from tests.realdata.helpers import astronaut

    for split in ("train", "val"):
        for label in ("real", "fake"):  # both classes: training refuses a split of one class
            folder = tmp_path / "faces" / split / label
            folder.mkdir(parents=True)
            astronaut().resize((side, side)).save(folder / "a.jpg", quality=92 if label == "real" else 90)
    build_manifest([tmp_path / "faces"], tmp_path / "faces.csv")
    return tmp_path / "faces.csv"


def test_scaled_decode_reads_a_256_px_jpeg_at_half_size_for_a_110_px_resize(tmp_path: Path) -> None:
    manifest = read_manifest(_face_jpegs(tmp_path))
    transform = build_eval_transform(110, 96)
    full = ManifestDataset(manifest, "train", transform)
    scaled = ManifestDataset(manifest, "train", transform, decode_side=110)
    assert full.load_image(0).size == (256, 256)
    decoded = scaled.load_decoded(0)
    assert decoded.image.size == (128, 128) and decoded.full_size == (256, 256)
    assert ManifestDataset(manifest, "train", transform, decode_side=200).load_image(0).size == (256, 256)
    # What the model sees differs by resampling only: a few levels out of 255 on average.
    difference = (full[0][0] - scaled[0][0]).abs().mean().item()
    assert 0 < difference < 0.05  # normalised units (≈ 3 of 255 levels)


def test_training_decodes_scaled_unless_the_config_asks_for_the_reference_path(tmp_path: Path) -> None:
    from dfkd.config import load_config
    from dfkd.train.data import build_datasets

    manifest = read_manifest(_face_jpegs(tmp_path))
    view = {"resize_size": 110, "input_size": 96}
    for setting, expected in (("true", 110), ("false", None)):
        config = load_config(None, [f"data.manifest={manifest.path}", f"data.scaled_decode={setting}"])
        data = build_datasets(config, manifest, view)
        assert data.train_set.decode_side == expected and data.val_set.decode_side == expected
