"""Time `dfkd scan` (no --verify) on a tree of 331,335 tiny files, the size of the reference's merged dataset.

Usage: python benchmarks/scan_scale.py [--n 331335] [--dir /tmp/dfkd-scan-scale]
The tree is built once (empty-ish 1-byte files in the merged Kaggle layouts) and reused on later runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dfkd.data import build_manifest


def build_tree(root: Path, n: int) -> list[Path]:
    """Two roots in the two Kaggle layouts, ``n`` files in all, split 7:2:1 over real/fake."""
    roots = [root / "140k", root / "dfr"]
    layouts = [
        ("real_vs_fake/real-vs-fake", ("train", "valid", "test"), ("real", "fake")),
        ("Dataset", ("Train", "Validation", "Test"), ("Real", "Fake")),
    ]
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(n):
        return roots
    per_root = [n // 2, n - n // 2]
    for base, (prefix, splits, labels), count in zip(roots, layouts, per_root, strict=True):
        written = 0
        for split, share in zip(splits, (0.7, 0.2, 0.1), strict=True):
            for label in labels:
                folder = base / prefix / split / label
                folder.mkdir(parents=True, exist_ok=True)
                k = int(count * share / 2) if (split, label) != (splits[-1], labels[-1]) else count - written
                for i in range(k):
                    (folder / f"{i:06d}.jpg").write_bytes(b"x")
                written += k
    marker.write_text(str(n))
    return roots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=331_335)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/dfkd-scan-scale"))
    args = parser.parse_args()
    start = time.perf_counter()
    roots = build_tree(args.dir, args.n)
    print(f"tree ready in {time.perf_counter() - start:.1f} s")
    for resplit in (False, True):
        start = time.perf_counter()
        report = build_manifest(roots, args.dir / "manifest.csv", resplit=resplit)
        seconds = time.perf_counter() - start
        print(f"scan + split{' (--resplit)' if resplit else ''}: {len(report.samples):,} images in {seconds:.2f} s")


if __name__ == "__main__":
    main()
