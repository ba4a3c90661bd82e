"""What a trained detector reacts to: its scores on a manifest's test split after one change to every image.

A shortcut hunt for a model that calls a collection's genuine photos fake. Each probe changes every test image the
same way (blur, down-up scaling, sharpening, grey, less colour, a zoom into the crop, JPEG, noise), and the per-source
AUC, mean fake-probability of reals and fakes, and false-positive rate at the card's threshold are printed next to
the unchanged images'. A probe that moves the genuine photos' scores far more than the fakes' names what the model
takes for a sign of fake.

    python benchmarks/probe_transforms.py MODEL --manifest FOLD/manifest.csv --out runs/probe [--probes id sharpen]

The changed images are written once under ``--out`` (PNG, so no compression is added) and reused for the same
test images.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from generalisation import score  # this folder's benchmark: the folds' own scoring
from PIL import Image, ImageEnhance, ImageFilter

from dfkd.data.transforms import jpeg_roundtrip
from dfkd.models.checkpoint import read_model_card


def _down_up(image: Image.Image, factor: float) -> Image.Image:
    small = image.resize((round(image.width * factor), round(image.height * factor)), Image.BILINEAR)
    return small.resize(image.size, Image.BILINEAR)


def _zoom(image: Image.Image, share: float) -> Image.Image:
    """The central (1 - 2·share) of the crop, scaled back up: the face fills more of it."""
    dx, dy = round(image.width * share), round(image.height * share)
    return image.crop((dx, dy, image.width - dx, image.height - dy)).resize(image.size, Image.BICUBIC)


def _noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    pixels = np.asarray(image).astype(np.float32)
    pixels += np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


PROBES: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "id": lambda image, _: image,
    "blur": lambda image, _: image.filter(ImageFilter.GaussianBlur(1.5)),
    "down_up": lambda image, _: _down_up(image, 0.5),
    "sharpen": lambda image, _: image.filter(ImageFilter.UnsharpMask(2, 100, 2)),
    "sharpen_mild": lambda image, _: image.filter(ImageFilter.UnsharpMask(1, 60, 2)),
    "grey": lambda image, _: image.convert("L").convert("RGB"),
    "less_colour": lambda image, _: ImageEnhance.Color(image).enhance(0.6),
    "zoom_in": lambda image, _: _zoom(image, 20 / 256),
    "jpeg40": lambda image, _: jpeg_roundtrip(image, 40),
    "noise": lambda image, index: _noise(image, 4.0, index),
}


def probe_manifest(rows: list[dict], probe: str, folder: Path) -> Path:
    """A manifest of the test rows' images after ``probe``, written under ``folder`` (reused when made from the same
    images: ``sources.txt`` lists them, and another list makes them again)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = folder / "sources.txt"
    listed = "".join(f"{row['path']}\n" for row in rows)
    if not sources.exists() or sources.read_text() != listed:
        for old in folder.glob("*.png"):
            old.unlink()
        sources.write_text(listed)
    changed = []
    for index, row in enumerate(rows):
        path = folder / f"{index:05d}.png"
        if not path.exists():
            PROBES[probe](Image.open(row["path"]).convert("RGB"), index).save(path)
        changed.append({**row, "path": str(path)})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(changed)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--manifest", type=Path, required=True, help="A fold's manifest (its test split is probed).")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the changed images.")
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    args = parser.parse_args()

    with args.manifest.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    threshold = read_model_card(args.model).threshold
    print(f"{args.model}: threshold {threshold:.3f}; {len(rows)} test images of {args.manifest}")
    print("| probe | source | AUC | mean p(fake), reals | mean p(fake), fakes | reals called fake |")
    print("|---|---|---:|---:|---:|---:|")

    def shown(value: float | None, form: str) -> str:
        return "–" if value is None else format(value, form)

    for probe in args.probes:
        cells = score(args.model, probe_manifest(rows, probe, args.out / probe), None)["sources"]
        for source, cell in cells.items():
            figures = [
                shown(cell[key], form)
                for key, form in [("auc", ".3f"), ("mean_real", ".2f"), ("mean_fake", ".2f"), ("fpr", ".1%")]
            ]
            print(f"| {probe} | {source} | {' | '.join(figures)} |", flush=True)


if __name__ == "__main__":
    main()
