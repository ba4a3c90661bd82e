"""Recall and speed of the face detectors dfkd can use, on this CPU: the numbers behind the ``auto`` default.

Usage: python benchmarks/face_detectors.py [--realfaces ../shared/data/realfaces-dev] [--n-realfaces 1000]
                                            [--face-model ../shared/models/face_detection_yunet.onnx]

Sets:
- astronaut: ``skimage.data.astronaut()`` (one face, 512x512); a hit is a box with IoU >= 0.4 to the hand box.
- realfaces-dev: 256x256 portraits with one face each (real photos, StyleGAN2 faces, Photoshop composites);
  recall is the share of images with at least one face found; "extra" counts images with more than one.
- video: 60 frames of 640x360 written with OpenCV (mp4v) and read back, each with 1-3 realfaces-dev portraits of
  48-160 px moving across a textured background; recall is per face (a detection centred inside the portrait and at
  least a quarter of its width), false positives are detections that match no face.
- non-faces: five scikit-image photos without people and five noise images; false positives per image.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dfkd.faces.detect import available_detectors, build_face_detector

ASTRONAUT_BOX = (179, 60, 269, 177)  # hand-checked against all three detectors' boxes
ROOT = Path(__file__).resolve().parents[1]


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter_w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def timed(detector, image: Image.Image) -> tuple[list, float]:
    """Boxes and milliseconds of one call."""
    start = time.perf_counter()
    faces = detector.detect(image)
    return faces, (time.perf_counter() - start) * 1000


def realfaces_images(root: Path, n: int, seed: int = 0) -> list[Path]:
    """A seeded sample of ``n`` images from every source and class."""
    paths = sorted(root.glob("*/*/*.jpg"))
    random.Random(seed).shuffle(paths)
    return paths[:n]


def make_video(portraits: list[Path], path: Path, n_frames: int = 60, seed: int = 0) -> list[list[tuple]]:
    """Write the synthetic video; return each frame's portrait rectangles (x0, y0, x1, y1)."""
    import cv2

    rng = np.random.default_rng(seed)
    width, height = 640, 360
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 6)
    background = cv2.normalize(texture, None, 40, 200, cv2.NORM_MINMAX)
    tracks = []
    for slot in range(3):
        size = int(rng.integers(48, 161))
        x_start = 20 + slot * 210
        tracks.append((portraits[slot], size, x_start, int(rng.integers(10, height - size - 10))))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (width, height))
    truth = []
    for index in range(n_frames):
        frame = background.copy()
        rects = []
        for slot, (portrait, size, x_start, y_start) in enumerate(tracks[: 1 + index % 3]):
            scale = size * (1 + 0.3 * np.sin(index / 9 + slot))
            side = int(scale)
            x0 = min(width - side, x_start + index)
            y0 = min(height - side, y_start)
            face = np.asarray(Image.open(portrait).convert("RGB").resize((side, side), Image.BILINEAR))
            frame[y0 : y0 + side, x0 : x0 + side] = face[:, :, ::-1]
            rects.append((x0, y0, x0 + side, y0 + side))
        writer.write(frame)
        truth.append(rects)
    writer.release()
    return truth


def read_frames(path: Path) -> list[Image.Image]:
    """Every frame of a video as an RGB image."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(Image.fromarray(frame[:, :, ::-1].copy()))
    capture.release()
    return frames


def matches(box: tuple[int, int, int, int], rect: tuple[int, int, int, int]) -> bool:
    """A detection centred inside the portrait and at least a quarter of its width."""
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = rect[0] <= centre_x <= rect[2] and rect[1] <= centre_y <= rect[3]
    return inside and (box[2] - box[0]) >= 0.25 * (rect[2] - rect[0])


def non_face_images() -> list[Image.Image]:
    """Photos without people and noise images."""
    from skimage import data

    photos = [data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(), data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (360, 480, 3), dtype=np.uint8) for _ in range(5)]
    return [Image.fromarray(array) for array in photos + noise]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realfaces", type=Path, default=ROOT.parent / "shared" / "data" / "realfaces-dev")
    parser.add_argument("--n-realfaces", type=int, default=1000)
    parser.add_argument(
        "--face-model", type=Path, default=ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx"
    )
    args = parser.parse_args()

    import torch
    from skimage import data

    print(f"torch threads {torch.get_num_threads()}")
    astronaut = Image.fromarray(data.astronaut())
    portraits = realfaces_images(args.realfaces, args.n_realfaces) if args.realfaces.is_dir() else []
    names = available_detectors(args.face_model if args.face_model.is_file() else None)
    with tempfile.TemporaryDirectory() as tmp:
        video_path = Path(tmp) / "faces.mp4"
        truth = make_video(portraits, video_path) if len(portraits) >= 3 else []
        frames = read_frames(video_path) if truth else []
    others = non_face_images()
    header = "| detector | astronaut IoU | astronaut ms | realfaces recall | extra | ms/img | video recall | video FP |"
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    for name in names:
        detector = build_face_detector(name, args.face_model if name == "yunet" else None)
        detector.detect(astronaut)  # warm-up
        faces, astronaut_ms = min((timed(detector, astronaut) for _ in range(5)), key=lambda pair: pair[1])
        astronaut_iou = max((iou(face.as_list(), ASTRONAUT_BOX) for face in faces), default=0.0)
        found = extra = 0
        times = []
        for path in portraits:
            faces, ms = timed(detector, Image.open(path).convert("RGB"))
            times.append(ms)
            found += bool(faces)
            extra += len(faces) > 1
        hits = total = false_positives = 0
        video_times = []
        for frame, rects in zip(frames, truth, strict=False):
            faces, ms = timed(detector, frame)
            video_times.append(ms)
            total += len(rects)
            hits += sum(any(matches(face.as_list(), rect) for face in faces) for rect in rects)
            false_positives += sum(not any(matches(face.as_list(), rect) for rect in rects) for face in faces)
        non_face_fp = sum(len(detector.detect(image)) for image in others)
        recall = found / len(portraits) if portraits else float("nan")
        video_recall = hits / total if total else float("nan")
        rows.append(
            f"| {name} | {astronaut_iou:.2f} | {astronaut_ms:.0f} | {recall:.3f} ({found}/{len(portraits)}) "
            f"| {extra} | {statistics.mean(times or [float('nan')]):.1f} "
            f"| {video_recall:.3f} ({hits}/{total}) @ {statistics.mean(video_times or [float('nan')]):.0f} ms "
            f"| {false_positives} (+{non_face_fp} on 10 non-face images) |"
        )
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
