"""Label cues in the files themselves: file size, JPEG compression and pixel size per class within each source.

When one class of a source was saved at another JPEG quality or resolution than the other, the file's size, its
quantisation tables or its pixel size tell them apart, and a detector can learn that instead of the forgery
(realfaces-dev's ``inswapper_ffhq``: the swaps compress smaller, AUC ≈ 0.83 from size alone; in the original CIPLAB
set a quarter of the fakes carry JPEG tables no real has). ``dfkd scan`` measures the file size per source from the
sizes it already has; with ``--verify``, which reads every file, the compression and the pixel size too.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfkd.data.crop_geometry import MIN_CLASS_ROWS, group_by_source, has_both_classes, label_cue_strength
from dfkd.data.scan import Sample, source_names

# How a file was saved, split into the traits checked one by one: (name, what is compared, advice).
ENCODING_TRAITS = (
    ("compression", "format and JPEG quantisation tables", "re-encode both classes alike"),
    ("pixel size", "width x height", "resize both classes alike"),
)


def encoding_signature(data: bytes) -> dict[str, str] | None:
    """How an encoded image was saved, per trait of :data:`ENCODING_TRAITS`: ``{"compression": "FORMAT tables",
    "pixel size": "WxH"}`` (tables: a digest of a JPEG's quantisation tables, ``-`` for other formats), from its
    header; None when Pillow cannot read the header."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            tables = getattr(image, "quantization", None) or {}
            digest = hashlib.sha1(repr(sorted((k, list(v)) for k, v in tables.items())).encode()).hexdigest()[:12]
            compression = f"{image.format} {digest if tables else '-'}"
            return {"compression": compression, "pixel size": f"{image.width}x{image.height}"}
    except (OSError, ValueError, Image.DecompressionBombError):  # the decode check reports unreadable files
        return None


def _by_source(
    samples: Iterable[Sample], roots: list[str | os.PathLike[str]], value_of: Callable[[Sample], Any]
) -> dict[str, tuple[np.ndarray, list[Any]]]:
    """Per source (a scanned root, or a folder above ``real`` / ``fake`` in it) with MIN_CLASS_ROWS files of each
    class or more: (is_fake per file, ``value_of`` per file); files whose value is None are left out."""
    resolved = [Path(root).resolve() for root in roots]
    root_of = dict(zip(source_names(resolved), resolved, strict=True))
    valued = [(sample, value_of(sample)) for sample in samples if sample.label in ("real", "fake")]
    groups = group_by_source(
        [(sample, value) for sample, value in valued if value is not None],
        lambda pair: f"{pair[0].source}/{os.path.relpath(pair[0].path, root_of[pair[0].source])}",
    )
    return {
        name or ".": (np.array([sample.label == "fake" for sample, _ in group]), [value for _, value in group])
        for name, group in groups.items()
        if has_both_classes(sample.label for sample, _ in group)
    }


def _categorical_auc(values: list[str], is_fake: np.ndarray) -> float:
    """How well a categorical trait tells the classes apart: each file scored by the fake share among the files of
    the other half of the source with the same value (the halves alternate, so a file never scores itself; a value
    the other half lacks scores the source's fake share), then the ROC AUC. 0.5 for a trait every file shares and
    for one no two files share."""
    from sklearn.metrics import roc_auc_score

    prior = float(is_fake.mean())
    half = np.arange(len(values)) % 2
    scores = np.empty(len(values))
    for side in (0, 1):
        other: dict[str, list[float]] = {}
        for value, fake, h in zip(values, is_fake, half, strict=True):
            if h != side:
                other.setdefault(value, []).append(float(fake))
        for index in np.flatnonzero(half == side):
            seen = other.get(values[index])
            scores[index] = (sum(seen) + prior) / (len(seen) + 1) if seen else prior
    return float(roc_auc_score(is_fake, scores))


def _area_auc(sizes: list[str], is_fake: np.ndarray) -> float:
    """How well the pixel count (``"WxH"`` → W·H) tells the classes apart, as a ROC AUC: exact sizes miss a class
    of large photos against one of small ones when no two files share a size."""
    from sklearn.metrics import roc_auc_score

    areas = [int(width) * int(height) for width, height in (size.split("x") for size in sizes)]
    return float(roc_auc_score(is_fake, areas))


def _exclusive_values(values: list[str], is_fake: np.ndarray, trait: str) -> list[str]:
    """Sentences for a value that MIN_CLASS_ROWS or more files of one class share and no file of the other has: a
    sure label for those files even when the trait's AUC is modest (a quarter of the fakes saved another way)."""
    counts: dict[str, list[int]] = {}
    for value, fake in zip(values, is_fake, strict=True):
        counts.setdefault(value, [0, 0])[int(fake)] += 1
    lines = []
    for label, other in ((1, 0), (0, 1)):
        exclusive = sum(
            count[label] for count in counts.values() if count[label] >= MIN_CLASS_ROWS and not count[other]
        )
        total = int((is_fake == bool(label)).sum())
        if exclusive and exclusive < total:  # a class that is all one value against another's mix is the AUC's case
            name, other_name = ("fake", "real") if label else ("real", "fake")
            lines.append(
                f"{exclusive} of {total} {name} files ({exclusive / total:.0%}) have a {trait} no {other_name} file has"
            )
    return lines


def file_encoding_warnings(
    samples: Iterable[Sample], roots: list[str | os.PathLike[str]], encodings: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """A sentence for each source and trait of :data:`ENCODING_TRAITS` that tells its real and fake files apart
    (``encodings``: path → :func:`encoding_signature`)."""
    lines = []
    for name, (is_fake, signatures) in _by_source(samples, roots, lambda sample: encodings.get(sample.path)).items():
        for trait, compared, advice in ENCODING_TRAITS:
            values = [signature[trait] for signature in signatures]
            strength = label_cue_strength(_categorical_auc(values, is_fake))
            if trait == "pixel size":  # sizes that all differ still tell the classes apart when one is larger
                strength = max(strength or 0.0, label_cue_strength(_area_auc(values, is_fake)) or 0.0) or None
            found = [f"the {trait} alone tells real from fake (AUC {strength:.2f})"] if strength else []
            found += _exclusive_values(values, is_fake, trait)
            lines += [
                f"{name}: {finding}, judged by {compared}: a shortcut a detector can learn instead of the forgery; "
                f"{advice} (dfkd crop-faces re-encodes and resizes every crop the same way)"
                for finding in found
            ]
    return lines


def file_size_warnings(samples: Iterable[Sample], roots: list[str | os.PathLike[str]]) -> list[str]:
    """A sentence for each source (a scanned root, or a folder above ``real`` / ``fake`` in it) whose real and fake
    files differ in size enough to tell the classes apart (with MIN_CLASS_ROWS files of each class or more)."""
    lines = []
    for name, (is_fake, values) in _by_source(samples, roots, lambda sample: sample.size).items():
        # imported here: most scans (one class, or few files per source) never need scikit-learn's import second
        from sklearn.metrics import roc_auc_score

        sizes = np.array(values, dtype=np.float64)
        strength = label_cue_strength(float(roc_auc_score(is_fake, sizes)))
        if strength is None:
            continue
        lines.append(
            f"{name}: file size alone tells real from fake (AUC {strength:.2f}; median "
            f"{np.median(sizes[~is_fake]) / 1024:.0f} KiB real, {np.median(sizes[is_fake]) / 1024:.0f} KiB fake): the "
            "classes differ in how they were saved or in how much fine detail they hold, a shortcut a detector can "
            f"learn instead of the forgery; a model's AUC on this source means little unless it clearly beats "
            f"{strength:.2f}"
        )
    return lines
