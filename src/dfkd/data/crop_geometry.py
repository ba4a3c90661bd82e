"""Face-crop geometry per class, and the warnings when it differs between real and fake.

A crop's framing can carry the label: when real photos are framed tightly and fakes loosely, a margin that has to
shrink to fit the photo shrinks for one class only, and the face's share of the crop (or a black overhang) then
tells the classes apart without looking at any forgery. ``dfkd crop-faces`` reports these figures per class, over
the whole folder and for each source in it (the folders above ``real`` / ``fake``), and training repeats the
warnings from the crop's sidecar. Per source matters: pooled over sources, one source's tightly framed reals can be
outweighed by another's loosely framed ones, and the warning would stay silent while that source's classes are told
apart by the face's size alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dfkd.data.scan import LABEL_FOLDERS, SPLIT_FOLDERS

logger = logging.getLogger(__name__)
T = TypeVar("T")

CROP_SIDECAR = "crop.json"  # written by dfkd crop-faces at the top of its output folder
# Settings crop-faces records that older crop.json files lack, with the value those crops were made with.
LATER_SETTINGS: dict[str, Any] = {"align": False}
# What keeps crops inside their photos: a smaller margin for square crops; for aligned ones, no margin does.
SQUARE_INSIDE = "a smaller margin (--margin 0) keeps crops inside the image"
ALIGNED_INSIDE = (
    "aligned crops mirror what a tightly framed photo lacks at any margin; square crops (crop-faces without --align) "
    "at a small margin stay inside the photo"
)

# Differences between classes beyond which the framing itself is a usable label cue.
MAX_SHRUNK_RATE_GAP = 0.10
MAX_OVERHANG_RATE_GAP = 0.05
MAX_FACE_SHARE_GAP = 0.05
# How far from 0.5 the AUC of one trait alone (face size in the crop, file size, compression …; fake against real)
# may go before the trait is a label cue: 0.7 or 0.3.
LABEL_CUE_AUC_GAP = 0.2
MIN_CLASS_ROWS = 10  # crops of each class a source needs for its own figures
OVERHANG_CUE = 0.02  # share of a crop outside the image (filled) counted as overhanging
FIT_QUANTILE = 0.10  # the suggested margin fits at least 90 % of each class without shrinking
MARGIN_STEP = 0.05


def fit_margin(face_side: float, width: int, height: int) -> float:
    """The largest margin whose square around a face of ``face_side`` px fits a ``width`` x ``height`` image."""
    if face_side <= 0:
        return 0.0
    return max(0.0, (min(width, height) / face_side - 1.0) / 2.0)


def class_geometry(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per class (``label`` of each row): crops, shrunk-margin and overhang rates, median face share, fit margin.

    Each row needs ``label``, ``shrunk`` (0/1), ``overhang`` (share), ``face_share`` and ``fit_margin``; rows of
    other labels than real / fake are ignored.
    """
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("label") in ("real", "fake"):
            by_label.setdefault(str(row["label"]), []).append(row)
    stats = {}
    for label, group in sorted(by_label.items()):
        fits = np.array([float(row["fit_margin"]) for row in group])
        stats[label] = {
            "n": len(group),
            "shrunk_rate": float(np.mean([float(row["shrunk"]) for row in group])),
            "overhang_rate": float(np.mean([float(row["overhang"]) > OVERHANG_CUE for row in group])),
            "face_share_median": float(np.median([float(row["face_share"]) for row in group])),
            "fit_margin_q10": float(np.quantile(fits, FIT_QUANTILE)),
        }
    return stats


def face_share_auc(rows: Iterable[Mapping[str, Any]]) -> float | None:
    """How well the face's share of the crop alone tells fake from real: the ROC AUC of ``face_share`` with fake as
    positive (0.5: not at all; near 0 or 1: almost perfectly). None with fewer than MIN_CLASS_ROWS crops of a class."""
    pairs = [(row["label"] == "fake", float(row["face_share"])) for row in rows if row.get("label") in ("real", "fake")]
    fakes = sum(is_fake for is_fake, _ in pairs)
    if fakes < MIN_CLASS_ROWS or len(pairs) - fakes < MIN_CLASS_ROWS:
        return None
    from sklearn.metrics import roc_auc_score  # only when there is something to measure: a second to import

    return float(roc_auc_score([is_fake for is_fake, _ in pairs], [share for _, share in pairs]))


def label_cue_strength(auc: float | None) -> float | None:
    """How well a trait alone tells the classes apart, whichever way round (``max(auc, 1 - auc)``), when that is
    enough to be a label cue (``LABEL_CUE_AUC_GAP``); None when it is not, or was not measured."""
    if auc is None or abs(auc - 0.5) < LABEL_CUE_AUC_GAP:
        return None
    return max(auc, 1.0 - auc)


def geometry_group(relative: str) -> str:
    """The source a crop belongs to: the folders of its path above its ``real`` / ``fake`` folder, split folders
    (train, val, test …) left out; ``""`` for a folder without sources."""
    folders = Path(relative).parts[:-1]
    labelled = [index for index, part in enumerate(folders) if part.lower() in LABEL_FOLDERS]
    above = folders[: labelled[-1]] if labelled else folders
    return "/".join(part for part in above if part.lower() not in SPLIT_FOLDERS)


def group_by_source(items: Iterable[T], path_of: Callable[[T], str]) -> dict[str, list[T]]:
    """``items`` by source (:func:`geometry_group` of each one's relative path), in name order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(geometry_group(path_of(item)), []).append(item)
    return dict(sorted(groups.items()))


def has_both_classes(labels: Iterable[str]) -> bool:
    """Whether MIN_CLASS_ROWS or more of ``labels`` are real and as many fake: enough for a source's own figures."""
    labels = list(labels)
    return min(labels.count("real"), labels.count("fake")) >= MIN_CLASS_ROWS


def source_geometry(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per source (:func:`geometry_group` of each row's ``path``) holding both classes, MIN_CLASS_ROWS crops each:
    ``{"classes": class_geometry, "face_share_auc": …}``. Empty when the rows come from one source (the pooled figures
    are that source's)."""
    groups = group_by_source(rows, lambda row: str(row.get("path", "")))
    if len(groups) < 2:
        return {}
    return {
        name or ".": {"classes": class_geometry(group), "face_share_auc": face_share_auc(group)}
        for name, group in groups.items()
        if has_both_classes(str(row.get("label")) for row in group)
    }


def suggested_margin(
    stats: Mapping[str, Mapping[str, float]], sources: Mapping[str, Mapping[str, Any]] | None = None
) -> float | None:
    """The largest margin (a multiple of 0.05) that fits at least 90 % of each class's images without shrinking, in
    every source of ``sources`` (:func:`source_geometry`) too."""
    classes = [
        *stats.values(),
        *(values for source in (sources or {}).values() for values in source["classes"].values()),
    ]
    if not classes:
        return None
    fitting = min(values["fit_margin_q10"] for values in classes)
    return math.floor(fitting / MARGIN_STEP + 1e-9) * MARGIN_STEP


def geometry_warnings(
    stats: Mapping[str, Mapping[str, float]],
    margin: float,
    face_auc: float | None = None,
    *,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    aligned: bool = False,
) -> list[str]:
    """Sentences naming each framing figure that differs between real and fake crops, over all crops (``stats``,
    ``face_auc``) and within each source (``sources``, prefixed with its name); empty when they agree. ``aligned``:
    the crops are aligned ones (``crop-faces --align``), which a smaller margin does not keep inside a tight photo."""
    lines = _framing_cues(stats, margin, face_auc)
    for name, source in (sources or {}).items():
        lines += [f"{name}: {line}" for line in _framing_cues(source["classes"], margin, source["face_share_auc"])]
    if lines and aligned:
        lines.append(
            f"the crop's framing tells the classes apart on its own (a shortcut, not forgery): {ALIGNED_INSIDE}"
        )
    elif lines:
        suggestion = suggested_margin(stats, sources)
        lines.append(
            "the crop's framing tells the classes apart on its own (a shortcut, not forgery); "
            + (
                f"margin {suggestion:.2f} fits at least 90 % of both classes: dfkd crop-faces --margin {suggestion:.2f}"
                if suggestion is not None and suggestion < margin
                else SQUARE_INSIDE
            )
        )
    return lines


def _framing_cues(stats: Mapping[str, Mapping[str, float]], margin: float, face_auc: float | None) -> list[str]:
    if "real" not in stats or "fake" not in stats:
        return []
    real, fake = stats["real"], stats["fake"]
    lines = []
    if abs(real["shrunk_rate"] - fake["shrunk_rate"]) > MAX_SHRUNK_RATE_GAP:
        lines.append(
            f"margin {margin:.2f} had to shrink to fit the image for {real['shrunk_rate']:.0%} of real and "
            f"{fake['shrunk_rate']:.0%} of fake crops"
        )
    if abs(real["overhang_rate"] - fake["overhang_rate"]) > MAX_OVERHANG_RATE_GAP:
        lines.append(
            f"{real['overhang_rate']:.0%} of real and {fake['overhang_rate']:.0%} of fake crops reach past the "
            "image border (pixels the photo lacks, filled)"
        )
    separates = label_cue_strength(face_auc)
    if separates or abs(real["face_share_median"] - fake["face_share_median"]) > MAX_FACE_SHARE_GAP:
        lines.append(
            f"the face fills {real['face_share_median']:.0%} of a real crop and {fake['face_share_median']:.0%} of "
            "a fake one (medians)"
            + (f"; the face's size alone tells them apart with AUC {separates:.2f}" if separates else "")
        )
    return lines


def crop_sidecar(root: Path) -> Path | None:
    """The crop-faces sidecar of ``root`` or of the crop-faces output folder it lies in."""
    for folder in (root, *root.parents):
        if (folder / CROP_SIDECAR).is_file():
            return folder / CROP_SIDECAR
    return None


def face_crop_of_roots(roots: Iterable[str | os.PathLike[str]]) -> tuple[dict[str, Any] | None, list[str]]:
    """The face-crop settings (detector, margin, size, align) shared by every scanned root, and the crops' warnings.

    ``None`` when no root is ``dfkd crop-faces`` output; when only some are, or they were cropped differently,
    ``None`` too, with a warning saying so (inference cannot frame faces two ways at once).
    """
    settings: list[dict[str, Any] | None] = []
    warnings: list[str] = []
    read: set[Path] = set()
    for root in roots:
        sidecar = crop_sidecar(Path(root).resolve())
        if sidecar is None:
            settings.append(None)
            continue
        if sidecar in read:  # sources inside one crop-faces folder share its record: say its warnings once
            continue
        read.add(sidecar)
        try:
            record = {**LATER_SETTINGS, **json.loads(sidecar.read_text(encoding="utf-8"))}
            settings.append({key: record[key] for key in ("detector", "margin", "size", "align")})
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.append(f"{sidecar}: unreadable crop settings ({error}); face crop not recorded")
            settings.append(None)
            continue
        if not record.get("complete", False):
            warnings.append(f"{sidecar.parent}: crop-faces did not finish there (run it again to complete)")
        warnings.extend(f"{sidecar.parent.name}: {line}" for line in record.get("warnings") or [])
    distinct = {json.dumps(item, sort_keys=True) for item in settings}
    if len(distinct) == 1 and settings and settings[0] is not None:
        return settings[0], warnings
    if len(distinct) > 1:
        warnings.append(
            "the scanned folders were face-cropped differently (or only some were): no face crop is recorded, so "
            "inference frames faces with its default margin; crop every source with the same crop-faces settings"
        )
    return None, warnings
