"""Label cues in the files themselves: file size per class within each source.

When one class of a source was saved at another JPEG quality or resolution than the other, the file's size alone
tells them apart, and a detector can learn that instead of the forgery (realfaces-dev's ``inswapper_ffhq``: the
swaps compress smaller, AUC ≈ 0.83 from size alone). ``dfkd scan`` measures it per source from the sizes it already
has and warns, before anything is trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dfkd.data.crop_geometry import MIN_CLASS_ROWS, geometry_group
from dfkd.data.scan import Sample, source_names

# How far from 0.5 the AUC of file size (fake against real) may go before size alone is a label cue: 0.7 or 0.3.
MAX_FILE_SIZE_AUC_GAP = 0.2


def file_size_warnings(samples: Iterable[Sample], roots: list[str | os.PathLike[str]]) -> list[str]:
    """A sentence for each source (a scanned root, or a folder above ``real`` / ``fake`` in it) whose real and fake
    files differ in size enough to tell the classes apart (with MIN_CLASS_ROWS files of each class or more)."""
    from sklearn.metrics import roc_auc_score

    resolved = [Path(root).resolve() for root in roots]
    root_of = dict(zip(source_names(resolved), resolved, strict=True))
    groups: dict[str, list[tuple[bool, int]]] = {}
    for sample in samples:
        if sample.label not in ("real", "fake"):
            continue
        root = root_of.get(sample.source)
        inner = geometry_group(os.path.relpath(sample.path, root)) if root is not None else ""
        name = f"{sample.source}/{inner}" if inner else sample.source
        groups.setdefault(name, []).append((sample.label == "fake", sample.size))
    lines = []
    for name, pairs in sorted(groups.items()):
        fakes = sum(is_fake for is_fake, _ in pairs)
        if fakes < MIN_CLASS_ROWS or len(pairs) - fakes < MIN_CLASS_ROWS:
            continue
        labels = [is_fake for is_fake, _ in pairs]
        sizes = np.array([size for _, size in pairs], dtype=np.float64)
        auc = float(roc_auc_score(labels, sizes))
        if abs(auc - 0.5) < MAX_FILE_SIZE_AUC_GAP:
            continue
        is_fake = np.array(labels)
        lines.append(
            f"{name}: file size alone tells real from fake (AUC {max(auc, 1 - auc):.2f}; median "
            f"{np.median(sizes[~is_fake]) / 1024:.0f} KiB real, {np.median(sizes[is_fake]) / 1024:.0f} KiB fake): the "
            "classes differ in how they were saved or in how much fine detail they hold, a shortcut a detector can "
            f"learn instead of the forgery; a model's AUC on this source means little unless it clearly beats "
            f"{max(auc, 1 - auc):.2f}"
        )
    return lines
