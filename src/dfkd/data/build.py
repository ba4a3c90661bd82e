"""`dfkd scan` as a library call: scan roots, verify images, split, find leakage, write the manifest."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dfkd.data.crop_geometry import face_crop_of_roots
from dfkd.data.images import ImageLoadError, open_image, unreadable_reason
from dfkd.data.manifest import DEFAULT_RATIOS, assign_splits, count_table, write_manifest
from dfkd.data.scan import Sample, scan_roots
from dfkd.data.shortcuts import encoding_signature, file_encoding_warnings, file_size_warnings
from dfkd.utils import PATH_ERRORS, atomic_write, track

logger = logging.getLogger(__name__)
UNLABELLED_REASON = "unlabelled: no folder named 'real' or 'fake' above it"


@dataclass
class ScanReport:
    """What `build_manifest` wrote and found."""

    manifest_path: Path
    content_hash: str
    samples: list[Sample]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # symbolic link loops, unreadable folders
    leakage: list[tuple[str, list[str]]] = field(default_factory=list)
    label_conflicts: list[tuple[str, list[str]]] = field(default_factory=list)  # the same bytes as real and fake
    other_files: int = 0

    @property
    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{split: {label: {source: n}}}``."""
        return count_table(self.samples)


def _check_one(path: str) -> tuple[str, str | None, str | None, dict[str, str] | None]:
    """Decode one file fully; return (path, reason or None, sha1 of its bytes or None, its encoding or None).

    The encoding (:func:`dfkd.data.shortcuts.encoding_signature`) says how the file was saved: format, pixel size and,
    for a JPEG, its quantisation tables."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return path, unreadable_reason(error), None, None
    try:
        open_image(data, name=path)
    except ImageLoadError as error:
        return path, error.reason, None, None
    return path, None, hashlib.sha1(data).hexdigest(), encoding_signature(data)


def verify_images(
    paths: list[str], *, workers: int | None = None
) -> dict[str, tuple[str | None, str | None, dict[str, str] | None]]:
    """Decode every image in parallel; map path → (reason it failed or None, content sha1 or None, encoding or
    None)."""
    workers = workers or min(os.cpu_count() or 1, 8)
    results: dict[str, tuple[str | None, str | None, dict[str, str] | None]] = {}
    if workers <= 1 or len(paths) < 64:
        iterator = map(_check_one, paths)
        for path, reason, digest, encoding in track(iterator, total=len(paths), description="verifying images"):
            results[path] = (reason, digest, encoding)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        iterator = pool.map(_check_one, paths, chunksize=max(1, min(256, len(paths) // (workers * 8) or 1)))
        for path, reason, digest, encoding in track(iterator, total=len(paths), description="verifying images"):
            results[path] = (reason, digest, encoding)
    return results


MAX_CONFLICTS_LOGGED = 10  # a wrongly copied folder would otherwise flood the log; the count is in the sidecar


def _identical_groups(samples: list[Sample], digests: dict[str, str]) -> list[tuple[str, list[Sample]]]:
    """Groups of two or more identical files (same sha1), by digest."""
    by_digest: dict[str, list[Sample]] = {}
    for sample in samples:
        digest = digests.get(sample.path)
        if digest is not None:
            by_digest.setdefault(digest, []).append(sample)
    return [(digest, group) for digest, group in sorted(by_digest.items()) if len(group) > 1]


def find_leakage(samples: list[Sample], digests: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Groups of identical files (same sha1) whose members sit in more than one split."""
    return [
        (digest, [f"{s.split}:{s.path}" for s in group])
        for digest, group in _identical_groups(samples, digests)
        if len({s.split for s in group}) > 1
    ]


def find_label_conflicts(samples: list[Sample], digests: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Groups of identical files (same sha1) filed both as real and as fake: one of the two labels is wrong."""
    return [
        (digest, [f"{s.label}:{s.path}" for s in group])
        for digest, group in _identical_groups(samples, digests)
        if len({s.label for s in group}) > 1
    ]


def build_manifest(
    roots: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 42,
    resplit: bool = False,
    verify: bool = False,
    workers: int | None = None,
) -> ScanReport:
    """Scan ``roots`` into the manifest ``out`` (CSV + JSON sidecar + rejected list).

    With ``verify`` every image is decoded; unreadable ones go to ``<out>.rejected.csv`` with their reason,
    and identical files in different splits are written to ``<out>.leakage.csv``.
    """
    out = Path(out)
    found = scan_roots(list(roots))
    samples = found.samples
    rejected: list[tuple[str, str]] = []
    leakage: list[tuple[str, list[str]]] = []
    digests: dict[str, str] = {}
    encodings: dict[str, dict[str, str]] = {}  # how each file was saved, known when verifying (a header read per file)
    if verify:
        checks = verify_images([s.path for s in samples], workers=workers)
        rejected = sorted((path, reason) for path, (reason, _, _) in checks.items() if reason is not None)
        bad = {path for path, _ in rejected}
        samples = [s for s in samples if s.path not in bad]
        digests = {path: digest for path, (_, digest, _) in checks.items() if digest is not None}
        encodings = {path: encoding for path, (_, _, encoding) in checks.items() if encoding is not None}
    else:
        rejected = sorted((s.path, "empty file (0 bytes)") for s in samples if s.size == 0)
        bad = {path for path, _ in rejected}
        samples = [s for s in samples if s.path not in bad]
    samples = assign_splits(samples, ratios=ratios, seed=seed, resplit=resplit)
    label_conflicts: list[tuple[str, list[str]]] = []
    if digests:
        leakage = find_leakage(samples, digests)
        label_conflicts = find_label_conflicts(samples, digests)
    for digest, members in label_conflicts[:MAX_CONFLICTS_LOGGED]:
        logger.warning("the same image is filed as real and as fake (sha1 %s): %s", digest[:12], ", ".join(members))
    if len(label_conflicts) > MAX_CONFLICTS_LOGGED:
        logger.warning("… and %d more images filed as both real and fake", len(label_conflicts) - MAX_CONFLICTS_LOGGED)
    face_crop, crop_warnings = face_crop_of_roots(roots)
    for line in crop_warnings:
        logger.warning("face crops: %s", line)
    size_warnings = file_size_warnings(samples, list(roots))
    for line in size_warnings:
        logger.warning("file sizes: %s", line)
    # None without --verify: no file was read, so how the files were saved is unknown, not fine.
    encoding_warnings = file_encoding_warnings(samples, list(roots), encodings) if verify else None
    for line in encoding_warnings or []:
        logger.warning("file encodings: %s", line)
    info = {
        "roots": [str(Path(r).resolve()) for r in roots],
        "face_crop": face_crop,
        "face_crop_warnings": crop_warnings,
        "file_size_warnings": size_warnings,
        "file_encoding_warnings": encoding_warnings,
        "ratios": list(ratios),
        "seed": seed,
        "resplit": resplit,
        "verified": verify,
        "n_rejected": len(rejected),
        "n_unlabelled": len(found.unlabelled),
        "n_skipped": len(found.skipped),
        "n_leaked_groups": len(leakage) if verify else None,
        "n_label_conflicts": len(label_conflicts) if verify else None,
    }
    content_hash = write_manifest(out, samples, info)
    stem = out.with_suffix("")
    with atomic_write(f"{stem}.rejected.csv", "w", encoding="utf-8", errors=PATH_ERRORS, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "reason"])
        writer.writerows(rejected)
        writer.writerows((path, UNLABELLED_REASON) for path in found.unlabelled)
        writer.writerows(found.skipped)
    if verify:
        with atomic_write(f"{stem}.leakage.csv", "w", encoding="utf-8", errors=PATH_ERRORS, newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["sha1", "split:path"])
            for digest, members in leakage:
                writer.writerows((digest, member) for member in members)
    for path, reason in rejected:
        logger.warning("rejected %s: %s", path, reason)
    return ScanReport(
        manifest_path=out,
        content_hash=content_hash,
        samples=samples,
        rejected=rejected,
        unlabelled=found.unlabelled,
        skipped=found.skipped,
        leakage=leakage,
        label_conflicts=label_conflicts,
        other_files=found.other_files,
    )
