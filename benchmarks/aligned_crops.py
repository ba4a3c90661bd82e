"""Aligned face crops (``dfkd crop-faces --align``): the figures behind them.

``template``: where a face detector's box falls in the mean face's 112-px frame (the frame ``dfkd.faces.align`` maps
every face into), over every ``--every``-th image of a dataset: the median box side and centre, from which
``TEMPLATE_FACE_SIDE`` and ``TEMPLATE_FACE_CENTRE`` were set, so that an aligned crop's margin means what a square
crop's does.

``scores``: whether a model's scores follow the mirrored border of aligned crops: the mean fake-probability of a
manifest split's images per source, class and whether the crop reaches past its photo (``overhang`` in the crop
folder's ``faces.csv`` above crop-faces' 2 % cue).

Usage:
    python benchmarks/aligned_crops.py template --data ../shared/data/realfaces-dev \
        --face-model ../shared/models/face_detection_yunet.onnx [--every 8]
    python benchmarks/aligned_crops.py scores MODEL --manifest FOLD/manifest.csv --faces CROPS [--split test]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from dfkd.data.crop_geometry import OVERHANG_CUE


def template(data: Path, face_model: str | None, every: int) -> None:
    from dfkd.data.faces import list_images, most_prominent
    from dfkd.data.images import open_image
    from dfkd.faces.align import MEAN_FACE_5, box_landmarks, similarity_transform
    from dfkd.faces.detect import build_face_detector

    detector = build_face_detector("auto", face_model)  # YuNet when its model file is given, as crop-faces
    sides, centres = [], []
    for relative in list_images(data)[::every]:
        box = most_prominent(detector.detect(open_image(data / relative)))  # decoded as crop-faces decodes
        if box is None:
            continue
        matrix = similarity_transform(box_landmarks(box), MEAN_FACE_5)  # image pixels -> the mean face's frame
        scale = float(np.hypot(*matrix[0, :2]))
        centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
        sides.append(max(box.width, box.height) * scale)
        centres.append(centre @ matrix[:, :2].T + matrix[:, 2])
    middle = np.median(np.array(centres), axis=0)
    print(f"{detector.name} boxes of {len(sides)} faces in the mean face's 112-px frame (medians):")
    print(f"  side {np.median(sides):.1f}, centre ({middle[0]:.1f}, {middle[1]:.1f})")


def scores(model: Path, manifest: Path, faces: Path, split: str) -> None:
    from dfkd.data.manifest import read_manifest
    from dfkd.evaluate.evaluator import predict_split
    from dfkd.models import load_model

    with open(faces / "faces.csv", newline="", encoding="utf-8") as handle:
        overhang = {(faces / row["path"]).resolve(): float(row["overhang"] or 0) for row in csv.DictReader(handle)}
    net, card = load_model(model)
    predictions = predict_split(net, read_manifest(manifest), split, card.preprocessing, num_workers=0)
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for path, source, label, prob in zip(
        predictions.paths, predictions.sources, predictions.labels, predictions.fake_probs, strict=True
    ):
        mirrored = "past the photo" if overhang[Path(path).resolve()] > OVERHANG_CUE else "inside the photo"
        groups[(str(source), "fake" if label else "real", mirrored)].append(float(prob))
    print("| source | class | crop | images | mean fake-probability |\n|---|---|---|---:|---:|")
    for (source, label, mirrored), probs in sorted(groups.items()):
        print(f"| {source} | {label} | {mirrored} | {len(probs)} | {np.mean(probs):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measured = commands.add_parser("template", help="Where a detector's box falls in the mean face's frame.")
    measured.add_argument("--data", type=Path, required=True)
    measured.add_argument("--face-model", default=None)
    measured.add_argument("--every", type=int, default=8, help="Use every N-th image (sorted by path).")
    scored = commands.add_parser("scores", help="A model's mean scores with and without a mirrored border.")
    scored.add_argument("model", type=Path)
    scored.add_argument("--manifest", type=Path, required=True)
    scored.add_argument("--faces", type=Path, required=True, help="The crop-faces --align folder of the manifest.")
    scored.add_argument("--split", default="test")
    args = parser.parse_args()
    if args.command == "template":
        template(args.data, args.face_model, args.every)
    else:
        scores(args.model, args.manifest, args.faces, args.split)


if __name__ == "__main__":
    main()
