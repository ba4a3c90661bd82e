"""Shared fixtures: tiny real/fake image trees written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# ../shared beside the checkout may hold real face photos (realfaces-dev) and the YuNet face model. A plain clone has
# neither: tests that use them skip, saying why, and none assumes what is there (how many files, which names).
SHARED = Path(__file__).resolve().parents[2] / "shared"
REALFACES = SHARED / "data" / "realfaces-dev"
YUNET = SHARED / "models" / "face_detection_yunet.onnx"


def realfaces_sample(limit: int) -> list[Path]:
    """Up to ``limit`` JPEGs spread evenly over ../shared's realfaces-dev; skips the test when there are none."""
    images = sorted(REALFACES.rglob("*.jpg")) if REALFACES.is_dir() else []
    if not images:
        pytest.skip(f"no realfaces-dev images at {REALFACES} (optional data beside the checkout)")
    step = max(1, len(images) // limit)
    return images[::step][:limit]


def write_image(path: Path, seed: int, size: int = 40, fmt: str | None = None) -> Path:
    """Write a small random RGB image (content differs by seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, format=fmt)
    return path


def make_tree(root: Path, layout: dict[str, int], seed: int = 0) -> Path:
    """Write ``n`` images into each relative folder of ``layout`` (e.g. ``{"train/real": 5}``)."""
    counter = seed * 100_000
    for folder, n in layout.items():
        for i in range(n):
            counter += 1
            write_image(root / folder / f"img_{i:04d}.jpg", seed=counter)
    return root


@pytest.fixture
def tree_140k(tmp_path: Path) -> Path:
    """The "140k Real and Fake Faces" layout in miniature."""
    base = tmp_path / "140k" / "real_vs_fake" / "real-vs-fake"
    make_tree(base, {f"{s}/{c}": n for s, n in (("train", 7), ("valid", 2), ("test", 1)) for c in ("real", "fake")})
    (tmp_path / "140k" / "real_vs_fake" / "train.csv").write_text("id,label\n")
    return tmp_path / "140k"


@pytest.fixture
def tree_dfr(tmp_path: Path) -> Path:
    """The "Deepfake and Real Images" layout in miniature (capitalised folders)."""
    base = tmp_path / "dfr" / "Dataset"
    layout = {f"{s}/{c}": n for s, n in (("Train", 6), ("Validation", 3), ("Test", 2)) for c in ("Real", "Fake")}
    make_tree(base, layout, seed=1)
    return tmp_path / "dfr"


def write_easy_dataset(
    root: Path,
    per_split: dict[str, int] | None = None,
    size: int = 40,
    *,
    fake_brighter: bool = True,
    seed: int = 0,
) -> Path:
    """Classes that differ in brightness: a dataset any CNN learns in a few steps (for loop tests, not detection)."""
    per_split = per_split or {"train": 16, "val": 8, "test": 4}
    counter = seed * 10_000
    bases = {"real": 60, "fake": 180} if fake_brighter else {"real": 180, "fake": 60}
    for split, n in per_split.items():
        for label, base in bases.items():
            for i in range(n):
                counter += 1
                rng = np.random.default_rng(counter)
                array = np.clip(base + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
                path = root / split / label / f"{label}_{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
    return root


@pytest.fixture(scope="session")
def easy_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest over :func:`write_easy_dataset`."""
    from dfkd.data import build_manifest

    base = tmp_path_factory.mktemp("easy")
    write_easy_dataset(base / "data")
    build_manifest([base / "data"], base / "manifest.csv")
    return base / "manifest.csv"


TINY = [
    "data.resize_size=40",
    "data.input_size=32",
    "data.batch_size=8",
    "data.num_workers=0",
    "train.accelerator=cpu",
    "optim.lr=0.003",
]


@pytest.fixture(scope="session")
def easy_teacher(easy_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8 trained on the easy set: a teacher that passes the gate."""
    from dfkd.config import load_config
    from dfkd.train import train

    run = tmp_path_factory.mktemp("teacher")
    config = load_config(None, [*TINY, f"data.manifest={easy_manifest}", "train.epochs=3", "model.name=resnet8"])
    result = train(config, run)
    assert result.best_value > 0.9, result.history
    return result.model_path
