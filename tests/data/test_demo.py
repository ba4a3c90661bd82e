"""The synthetic demo dataset: layout, determinism, validity, and that only the generator fingerprint separates it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfkd.data import demo
from dfkd.labels import FAKE, REAL

SPLITS = ("train", "valid", "test")


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.jpg"))}


def _labelled_paths(root: Path) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for split in SPLITS:
        for label, name in ((REAL, "real"), (FAKE, "fake")):
            found = sorted((root / split / name).glob("*.jpg"))
            paths += found
            labels += [label] * len(found)
    return paths, labels


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 images per class at the default size, made with a process pool."""
    return demo.make_demo_dataset(tmp_path_factory.mktemp("demo"), per_class=60, seed=3, workers=2)


def test_split_counts_follow_7_2_1_and_sum_to_per_class() -> None:
    assert demo.split_counts(20) == {"train": 14, "valid": 4, "test": 2}
    assert demo.split_counts(600) == {"train": 420, "valid": 120, "test": 60}
    for per_class in range(10, 80):
        counts = demo.split_counts(per_class)
        assert sum(counts.values()) == per_class
        for split, weight in zip(SPLITS, (0.7, 0.2, 0.1), strict=True):
            assert abs(counts[split] - weight * per_class) < 1


def test_layout_and_counts(tmp_path: Path) -> None:
    root = demo.make_demo_dataset(tmp_path, per_class=20, size=64, workers=0)
    assert root == tmp_path / "real_vs_fake" / "real-vs-fake"
    assert sorted(path.name for path in root.iterdir()) == sorted(SPLITS)
    for split, count in {"train": 14, "valid": 4, "test": 2}.items():
        for name in ("real", "fake"):
            files = sorted((root / split / name).iterdir())
            assert [path.name for path in files] == [f"{name}_{index:06d}.jpg" for index in range(count)]


def test_same_arguments_give_byte_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    serial = demo.make_demo_dataset(tmp_path / "a", per_class=10, size=48, seed=7, workers=0)
    pooled = demo.make_demo_dataset(tmp_path / "b", per_class=10, size=48, seed=7, workers=2)
    first = _files(serial)
    assert len(first) == 20
    assert first == _files(pooled)
    demo.make_demo_dataset(tmp_path / "a", per_class=10, size=48, seed=7, workers=0)  # overwrites in place
    assert _files(serial) == first
    other_seed = demo.make_demo_dataset(tmp_path / "c", per_class=10, size=48, seed=8, workers=0)
    assert _files(other_seed).keys() == first.keys()
    assert all(_files(other_seed)[name] != data for name, data in first.items())


def test_images_are_rgb_jpegs_of_the_requested_size(sample_root: Path, tmp_path: Path) -> None:
    paths, _ = _labelled_paths(sample_root)
    for path in paths[:: len(paths) // 10]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))
    odd_root = demo.make_demo_dataset(tmp_path, per_class=10, size=33, workers=0)
    for path in _labelled_paths(odd_root)[0]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (33, 33))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"per_class": 9}, "per_class"),
        ({"per_class": 20.0}, "per_class"),
        ({"size": 31}, "size"),
        ({"seed": -1}, "seed"),
        ({"workers": -2}, "workers"),
        ({"trace_strength": 1.5}, "trace_strength"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        demo.make_demo_dataset(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_upsampler_interpolates_and_its_phase_gains_make_the_checkerboard() -> None:
    low = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
    plain = demo.transposed_conv_upsample(low, 0.0)
    assert plain.shape == (16, 16, 3)
    np.testing.assert_allclose(plain[::2, ::2], low)
    ramp = np.broadcast_to(np.arange(12, dtype=np.float32)[None, :, None], (12, 12, 1))
    np.testing.assert_allclose(demo.transposed_conv_upsample(ramp, 0.0)[6, 6:16, 0], np.arange(3, 8, 0.5), atol=1e-5)
    flat = demo.transposed_conv_upsample(np.full((8, 8, 1), 0.5, dtype=np.float32), 0.1)
    assert flat.mean() == pytest.approx(0.5)
    assert demo.checkerboard_score(flat[..., 0]) == pytest.approx(0.1)


def test_no_trivial_global_cue_separates_the_classes(sample_root: Path) -> None:
    paths, labels = _labelled_paths(sample_root)
    auc = demo.trivial_cue_auc(paths, labels)
    assert auc < 0.65, f"mean colour / std / brightness / JPEG size separate real from fake (AUC {auc:.3f})"


def test_fakes_carry_the_periodic_upsampling_trace_and_reals_do_not(sample_root: Path) -> None:
    paths, labels = _labelled_paths(sample_root)
    scores = np.array([demo.checkerboard_score(path) for path in paths])
    fake_scores, real_scores = scores[np.array(labels) == FAKE], scores[np.array(labels) == REAL]
    assert np.median(fake_scores) > 0.5 * demo.FAKE_TRACE_STRENGTH
    assert np.median(fake_scores) > 5 * np.median(real_scores)
    assert np.quantile(fake_scores, 0.25) > np.quantile(real_scores, 0.75)


def test_trace_strength_zero_removes_the_fingerprint() -> None:
    fake_scores = [
        demo.checkerboard_score(_decode(demo.render_demo_jpeg(0, "train", FAKE, index, size=64, trace_strength=0.0)))
        for index in range(8)
    ]
    real_scores = [
        demo.checkerboard_score(_decode(demo.render_demo_jpeg(0, "train", REAL, index, size=64))) for index in range(8)
    ]
    assert np.median(fake_scores) < 3 * np.median(real_scores) + 1e-3


def _decode(data: bytes) -> Image.Image:
    import io

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
