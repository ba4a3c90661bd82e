"""`dfkd detect` on phone-size photos and a 1080p video: today's path (full decode, sequential) against the pipeline.

Usage: python benchmarks/detect_speed.py [--photos 24] [--rss-photos 1000] [--face-model YUNET.onnx] [--model M]
                                         [--workers N] [--work DIR] [--out FILE]

Inputs are built here, nothing is downloaded: ``--photos`` distinct 4032x3024 JPEGs (quality 90, a smooth, lightly
noisy background) with one face pasted at a random spot — a realfaces-dev face when ../shared/data/realfaces-dev is
present, else scikit-image's astronaut — and a folder of ``--rss-photos`` such photos (hard links to them, each read
and decoded anew), and a 1080p 30 fps video of 6 s with the face moving. Without --model a randomly initialised
resnet8_fast (resize 110, input 96, as the real-face recipes) is exported to ONNX: speed does not depend on weights.
Faces: YuNet (../shared/models/face_detection_yunet.onnx or --face-model) when present, else ``auto``.

Every measurement runs in its own Python process (peak RSS is that process's ``ru_maxrss``), one after another:

- ``today``: ``Detector(decode="full", workers=0)`` — every photo decoded at full size, one after another (the path
  ``dfkd detect --full-decode --workers 0`` keeps), with YuNet run by ``cv2.FaceDetectorYN`` as dfkd ran it when the
  issue was filed (``OpenCvYuNet`` below, patched in; dfkd now runs the same network on onnxruntime);
  ``pipeline``: the defaults (scaled decode, overlapped workers, YuNet on onnxruntime);
- img/s over the folder, and CPU seconds per photo (user + system, all threads: what a photo costs on a shared
  machine); per-image latency p50/p95 scoring one photo at a time; peak RSS on the folder and on
  ``--rss-photos`` photos at --batch-size 32 and 1000; time to first result = wall time of the whole command
  ``dfkd detect -m MODEL photo.jpg`` (Python start, imports, model load, one photo) for the ONNX and the PyTorch model;
- video: frames of video per second (decoded or grabbed) and the real-time factor at the default 2 sampled fps;
- loaders: one pass of decode + eval transform over 256-px face JPEGs at resize 110, full decode against the
  DCT-scaled one that ``ManifestDataset(decode_side=...)`` uses (the epoch's data work, without the model), and the
  wall time of a training epoch of the ``realfaces_student`` recipe with ``data.scaled_decode`` false and true;
- service: a real ``dfkd serve`` on 127.0.0.1 answering one 12-MP upload (median of 7), against the pipeline's
  one-photo latency.

Idle model threads: on 300 of the photos, the pipeline with the model's idle threads spinning (onnxruntime's default,
``OMP_WAIT_POLICY=ACTIVE`` for the PyTorch file) against sleeping (what detect and serve do), and the prepare stage
alone on the workers' threads (no model), the ceiling of the whole.

Stages: on one thread, the median milliseconds per photo of a full decode, of the scaled decode the pipeline makes,
and of face detection on its view (onnxruntime, and OpenCV's FaceDetectorYN for comparison): where the CPU goes.

Scores: the pipeline's fake probabilities against today's on the same photos (max |Δ|). The machine may be shared:
take the ratios, which come from one run, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
YUNET = SHARED / "models" / "face_detection_yunet.onnx"
REALFACES = SHARED / "data" / "realfaces-dev"
PHOTO_SIZE = (4032, 3024)
TODAY_CLI = "--dfkd-with-opencv-yunet"  # run `dfkd ARGS` with OpenCvYuNet patched in: python detect_speed.py THIS ARGS
NOISE = 2.0  # sensor-like grey noise (std, 8-bit levels): about 1.2 MB per photo at quality 90 (--noise)


def face_source() -> tuple[str, Image.Image]:
    """A real face crop from realfaces-dev when present, else the astronaut's head."""
    faces = sorted(REALFACES.rglob("*.jpg"))[:1] if REALFACES.is_dir() else []
    if faces:
        return "realfaces-dev", Image.open(faces[0]).convert("RGB")
    from skimage import data

    return "skimage astronaut", Image.fromarray(data.astronaut()).crop((134, 10, 314, 230))


def build_photo(seed: int, face: Image.Image) -> Image.Image:
    """A 12-MP photo: smooth background, light sensor-like noise, the face pasted at 700-1100 px."""
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    ramp_x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    ramp_y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    colour_a, colour_b = rng.uniform(40, 215, (2, 1, 1, 3)).astype(np.float32)
    pixels = colour_a * ramp_x + colour_b * ramp_y * 0.5 + 30.0
    noise = rng.normal(0, NOISE, (height, width, 1)).astype(np.float32)
    pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    photo = Image.fromarray(pixels)
    side = int(rng.integers(700, 1100))
    head = face.resize((side, round(side * face.height / face.width)), Image.BILINEAR)
    photo.paste(head, (int(rng.integers(0, width - head.width)), int(rng.integers(0, height - head.height))))
    return photo


def build_inputs(work: Path, n_photos: int, n_rss: int) -> dict[str, Any]:
    """Photos, the hard-linked large folder and the video (kept in ``work`` between runs)."""
    source, face = face_source()
    photos = work / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(n_photos):
        path = photos / f"photo_{seed:03d}.jpg"
        if not path.is_file():
            build_photo(seed, face).save(path, quality=90)
        paths.append(path)
    many = work / f"photos_{n_rss}"
    many.mkdir(exist_ok=True)
    for index in range(n_rss):
        link = many / f"photo_{index:04d}.jpg"
        if not link.exists():
            os.link(paths[index % len(paths)], link)
    video = work / "video_1080p.mp4"
    if not video.is_file():
        write_video(video, face)
    return {"face_source": source, "photos": photos, "many": many, "video": video, "one": paths[0]}


def write_video(path: Path, face: Image.Image, seconds: float = 6.0, fps: float = 30.0) -> None:
    """A 1080p mp4v clip with the face drifting across a gradient."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1920, 1080))
    background = np.asarray(build_photo(99, face).resize((1920, 1080)))[:, :, ::-1].copy()
    head = np.asarray(face.resize((360, round(360 * face.height / face.width))))[:, :, ::-1]
    for index in range(round(seconds * fps)):
        frame = background.copy()
        left, top = 200 + index * 4, 300 + int(40 * np.sin(index / 10))
        frame[top : top + head.shape[0], left : left + head.shape[1]] = head
        writer.write(frame)
    writer.release()


def build_model(work: Path) -> Path:
    """A random resnet8_fast (resize 110, input 96) exported to ONNX, beside its .safetensors file."""
    onnx_path = work / "resnet8_fast.onnx"
    if onnx_path.is_file():
        return onnx_path
    import torch

    from dfkd.deploy.onnx import export_onnx
    from dfkd.models import create_model, default_preprocessing, save_model

    torch.manual_seed(0)
    preprocessing = {**default_preprocessing("resnet8_fast"), "resize_size": 110, "input_size": 96}
    model_path = work / "resnet8_fast.safetensors"
    save_model(create_model("resnet8_fast"), model_path, {"preprocessing": preprocessing})
    export_onnx(model_path, onnx_path)
    return onnx_path


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (linear)."""
    return float(np.quantile(np.asarray(values), fraction)) if values else float("nan")


class OpenCvYuNet:
    """YuNet as dfkd ran it when issue 18 was filed: ``cv2.FaceDetectorYN``, one instance per thread (it holds its
    input size). Only today's path uses it, so the baseline is the issue's; boxes match dfkd's YuNet (tested)."""

    name = "yunet"

    def __init__(self, model_path: str, *, score_threshold: float = 0.6, max_side: int = 640) -> None:
        self.model_path, self.score_threshold, self.max_side = str(model_path), score_threshold, max_side
        self._local = threading.local()

    def detect(self, image: Image.Image) -> list:
        import cv2

        from dfkd.faces.backends import _scaled_array, boxes_from_array

        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = cv2.FaceDetectorYN.create(
                self.model_path, "", (320, 320), self.score_threshold, 0.3, 5000
            )
        pixels, scale = _scaled_array(image, self.max_side)
        detector.setInputSize((pixels.shape[1], pixels.shape[0]))
        _, faces = detector.detect(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return []
        corners = np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:4]], axis=1)
        landmarks = faces[:, 4:14].reshape(-1, 5, 2)
        return boxes_from_array(corners, faces[:, -1], scale, image.width, image.height, landmarks=landmarks)


def use_opencv_yunet() -> None:
    """Make dfkd build ``OpenCvYuNet`` wherever it builds YuNet (this process only): today's path."""
    from dfkd.faces import detect

    detect.YuNetDetector = OpenCvYuNet  # type: ignore[misc, assignment]
    detect._cached_detector.cache_clear()


# ---- measurements, each in a child process -------------------------------------------------------------------------


def stages(spec: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds per photo of each stage, on one thread (OpenCV's too), median over the photos: where a photo's
    CPU goes, and so the floor of what any pipeline can reach on these cores."""
    import cv2

    from dfkd.data.images import decode_image
    from dfkd.faces.detect import build_face_detector
    from dfkd.inference.pipeline import DETECTION_SIDE

    cv2.setNumThreads(1)
    paths = sorted(str(path) for path in Path(spec["folder"]).glob("*.jpg"))
    detector = build_face_detector("yunet" if spec["face_model"] else "auto", spec["face_model"])
    opencv = OpenCvYuNet(spec["face_model"]) if spec["face_model"] else None
    times: dict[str, list[float]] = {"full_decode": [], "scaled_decode": [], "detect_on_view": []}
    if opencv is not None:
        times["detect_on_view_opencv"] = []
    for path in paths:
        started = time.perf_counter()
        decode_image(path)
        times["full_decode"].append(time.perf_counter() - started)
        started = time.perf_counter()
        view = decode_image(path, min_short_side=110, min_long_side=DETECTION_SIDE).image
        times["scaled_decode"].append(time.perf_counter() - started)
        started = time.perf_counter()
        detector.detect(view)
        times["detect_on_view"].append(time.perf_counter() - started)
        if opencv is not None:
            started = time.perf_counter()
            opencv.detect(view)
            times["detect_on_view_opencv"].append(time.perf_counter() - started)
    report = {f"{name}_ms": 1000 * float(np.median(values)) for name, values in times.items()}
    report["view_size"] = list(view.size)
    return report


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement (in this process): ``folder``, ``latency``, ``video`` or ``stages``."""
    if spec["kind"] == "stages":
        return stages(spec)
    if spec.get("opencv_yunet"):
        use_opencv_yunet()
    if spec.get("spinning_onnx"):  # onnxruntime's default, which detection sessions turn off
        from dfkd.inference import backends

        opened = backends.open_onnx_session
        backends.open_onnx_session = lambda path, threads=None, spin=True: opened(path, threads, spin=True)
    from dfkd.inference.detector import Detector

    detector = Detector.load(
        spec["model"],
        face_model=spec["face_model"],
        decode=spec["decode"],
        workers=spec["workers"],
        batch_size=spec["batch_size"],
    )
    report: dict[str, Any] = {}
    if spec["kind"] == "prepare":  # decode, faces, crops on the workers' threads, no model: the pipeline's ceiling
        from concurrent.futures import ThreadPoolExecutor

        from dfkd.inference.pipeline import prepare_input

        paths = sorted(str(path) for path in Path(spec["folder"]).glob("*.jpg"))[: spec.get("limit")]
        with ThreadPoolExecutor(detector.workers) as pool:
            list(pool.map(lambda item: prepare_input(detector, item, faces=None), enumerate(paths[:4])))  # warm-up
            started = time.perf_counter()
            list(pool.map(lambda item: prepare_input(detector, item, faces=None), enumerate(paths)))
        report = {
            "n": len(paths),
            "workers": detector.workers,
            "img_per_s": len(paths) / (time.perf_counter() - started),
        }
    elif spec["kind"] == "folder":
        paths = sorted(str(path) for path in Path(spec["folder"]).glob("*.jpg"))[: spec.get("limit")]
        started, cpu_started = time.perf_counter(), cpu_seconds()
        first = None
        probs = []
        for result in detector.stream(paths):
            first = first if first is not None else time.perf_counter() - started
            probs.append(result["fake_prob"])
        wall = time.perf_counter() - started
        report = {"n": len(paths), "wall_s": wall, "img_per_s": len(paths) / wall, "first_s": first, "probs": probs}
        report["cpu_s_per_img"] = (cpu_seconds() - cpu_started) / len(paths)
    elif spec["kind"] == "latency":
        paths = sorted(str(path) for path in Path(spec["folder"]).glob("*.jpg"))
        detector.predict(paths[:1])  # warm-up
        times = []
        for path in paths:
            started = time.perf_counter()
            detector.predict([path])
            times.append(time.perf_counter() - started)
        report = {"p50_s": percentile(times, 0.5), "p95_s": percentile(times, 0.95)}
    elif spec["kind"] == "video":
        import cv2

        from dfkd.inference.video import predict_video

        capture = cv2.VideoCapture(spec["video"])
        total, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        started, cpu_started = time.perf_counter(), cpu_seconds()
        result = predict_video(detector, spec["video"])
        wall = time.perf_counter() - started
        report = {"frames": total, "scored": result["n_frames"], "wall_s": wall, "video_frames_per_s": total / wall}
        report["cpu_s"] = cpu_seconds() - cpu_started
        report["realtime_factor"] = total / fps / wall
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process so far: what a photo costs whatever else runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``child(spec)`` in a fresh Python process (``env``: variables added to its environment)."""
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"measurement {spec['kind']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def idle_threads(pipeline: dict[str, Any], folder: Path, model: Path, torch_model: Path, n: int = 300) -> dict:
    """img/s of the pipeline on ``n`` photos with the model's idle threads spinning (onnxruntime's default;
    ``OMP_WAIT_POLICY=ACTIVE`` for PyTorch) and sleeping (what detect and serve now do), and of its prepare stage
    alone (no model): what the model's threads take from the decoding workers."""
    spec = {**pipeline, "kind": "folder", "folder": str(folder), "limit": n}
    report = {
        "photos": n,
        "prepare_only_img_per_s": run_child({**spec, "kind": "prepare"})["img_per_s"],
        "onnx_spinning_img_per_s": run_child({**spec, "spinning_onnx": True})["img_per_s"],
        "onnx_sleeping_img_per_s": run_child(spec)["img_per_s"],
    }
    if torch_model.is_file():
        for policy in ("ACTIVE", "PASSIVE"):
            row = run_child({**spec, "model": str(torch_model)}, env={"OMP_WAIT_POLICY": policy})
            report[f"torch_omp_{policy.lower()}_img_per_s"] = row["img_per_s"]
    return report


def first_result_s(
    model: Path, photo: Path, face_model: str | None, extra: list[str], *, opencv_yunet: bool = False
) -> dict[str, float]:
    """Wall and CPU time (user + system) of the whole command ``dfkd detect -m MODEL PHOTO`` (medians of 3); with
    ``opencv_yunet`` the command runs through this script with ``OpenCvYuNet`` patched in (today's path)."""
    launcher = [__file__, TODAY_CLI] if opencv_yunet else ["-m", "dfkd"]
    command = [sys.executable, *launcher, "-q", "detect", "-m", str(model), str(photo), *extra]
    if face_model:
        command += ["--face-model", face_model]
    walls, cpus = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def service_s(model: Path, photo: Path, face_model: str | None) -> float:
    """Median time for a real ``dfkd serve`` to answer one upload of ``photo`` (7 requests after a warm-up)."""
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serve_load import free_port, start_server, stop_server

    port = free_port()
    server = start_server(model, port, ["--face-model", face_model] if face_model else [])
    try:
        data = photo.read_bytes()
        url = f"http://127.0.0.1:{port}/v1/detect"
        times = []
        with httpx.Client(timeout=120) as client:
            for attempt in range(8):
                started = time.perf_counter()
                response = client.post(url, files=[("files", (photo.name, data, "image/jpeg"))])
                response.raise_for_status()
                if attempt:
                    times.append(time.perf_counter() - started)
        return statistics.median(times)
    finally:
        stop_server(server)


def loader_epoch_s(work: Path, resize_size: int = 110, input_size: int = 96) -> dict[str, Any]:
    """One pass of a training loader's per-image work (decode + the eval transform) over 256-px face JPEGs —
    realfaces-dev when present, else 800 built here — with the full decode and with ``decode_side`` (DCT-scaled)."""
    from dfkd.data.images import decode_image
    from dfkd.data.transforms import build_eval_transform

    paths = sorted(REALFACES.rglob("*.jpg")) if REALFACES.is_dir() else []
    if not paths:
        folder = work / "faces_256"
        folder.mkdir(exist_ok=True)
        _, face = face_source()
        for index in range(800):
            path = folder / f"face_{index:03d}.jpg"
            if not path.is_file():
                face.resize((256, 256)).rotate(index % 20 - 10).save(path, quality=90)
            paths.append(path)
    transform = build_eval_transform(resize_size, input_size)
    timings: dict[str, Any] = {"images": len(paths), "resize_size": resize_size}
    for name, side in (("full_decode_s", 0), ("scaled_decode_s", resize_size)):
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            for path in paths:
                transform(decode_image(path, min_short_side=side).image)
            best = min(best, time.perf_counter() - started)
        timings[name] = best
    timings["ratio"] = timings["full_decode_s"] / timings["scaled_decode_s"]
    return timings


def train_epoch_s(work: Path, epochs: int = 2, repeats: int = 2) -> dict[str, Any]:
    """Seconds per training epoch of the real-face student recipe (``realfaces_student``: resnet8_fast, resize 110,
    input 96, random crops, 2 loader workers) on 256-px face JPEGs — realfaces-dev when present, else built here —
    with ``data.scaled_decode`` false (the reference's full decode) and true; runs alternate, the best of each kept."""
    from dfkd.config import load_config
    from dfkd.configs import resolve_config
    from dfkd.data import build_manifest
    from dfkd.train import train

    manifest = work / "train_epoch" / "faces.csv"
    if not manifest.is_file():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        if REALFACES.is_dir():
            roots = sorted(path for path in REALFACES.iterdir() if path.is_dir())
        else:
            roots = [work / "train_epoch" / "faces"]
            _, face = face_source()
            for label in ("real", "fake"):
                folder = roots[0] / label
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(400):
                    angle = index % 20 - 10 + (5 if label == "fake" else 0)
                    face.resize((256, 256)).rotate(angle).save(folder / f"{index:03d}.jpg", quality=90)
        build_manifest(roots, manifest)
    best: dict[str, float] = {}
    for _ in range(repeats):
        for scaled in (False, True):
            overrides = [f"data.manifest={manifest}", f"data.scaled_decode={str(scaled).lower()}"]
            overrides += [f"train.epochs={epochs}", f"train.patience={epochs}"]
            config = load_config(resolve_config("realfaces_student"), overrides)
            started = time.perf_counter()
            train(config, work / "train_epoch" / f"run_{scaled}", overwrite=True)
            seconds = (time.perf_counter() - started) / epochs
            key = "scaled_decode_s" if scaled else "full_decode_s"
            best[key] = min(best.get(key, float("inf")), seconds)
    return {
        **best,
        "ratio": best["full_decode_s"] / best["scaled_decode_s"],
        "epochs": epochs,
        "recipe": "realfaces_student",
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == TODAY_CLI:
        use_opencv_yunet()
        from dfkd.cli import app

        app(sys.argv[2:], prog_name="dfkd")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--rss-photos", type=int, default=1000)
    parser.add_argument("--face-model", default=str(YUNET) if YUNET.is_file() else None)
    parser.add_argument("--model", type=Path, default=None, help="An .onnx or .safetensors model (default: random).")
    parser.add_argument("--workers", type=int, default=None, help="Pipeline workers (default: cores, at most 4).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dfkd-detect-speed"))
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON figures here.")
    parser.add_argument("--noise", type=float, default=NOISE, help="Photo noise std: the JPEG size, so decode cost.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    globals()["NOISE"] = args.noise
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.work = args.work / f"noise{args.noise:g}"
    args.work.mkdir(parents=True, exist_ok=True)
    inputs = build_inputs(args.work, args.photos, args.rss_photos)
    model = args.model or build_model(args.work)
    torch_model = model.with_suffix(".safetensors")
    base = {"model": str(model), "face_model": args.face_model, "batch_size": 32}
    today = {**base, "decode": "full", "workers": 0, "opencv_yunet": bool(args.face_model)}
    pipeline = {**base, "decode": "scaled", "workers": args.workers}
    figures: dict[str, Any] = {
        "photos": args.photos,
        "photo_size": list(PHOTO_SIZE),
        "face_source": inputs["face_source"],
        "noise": args.noise,
        "photo_mb": inputs["one"].stat().st_size / 1e6,
        "face_model": args.face_model or "auto",
        "model": str(model),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    for name, spec in (("today", today), ("pipeline", pipeline)):
        folder = run_child({**spec, "kind": "folder", "folder": str(inputs["photos"])})
        latency = run_child({**spec, "kind": "latency", "folder": str(inputs["photos"])})
        figures[name] = {**folder, **latency}
        print(name, {key: value for key, value in figures[name].items() if key != "probs"}, flush=True)
    deltas = [abs(a - b) for a, b in zip(figures["today"].pop("probs"), figures["pipeline"].pop("probs"), strict=True)]
    figures["max_abs_prob_diff"] = max(deltas)
    figures["speedup_img_per_s"] = figures["pipeline"]["img_per_s"] / figures["today"]["img_per_s"]
    figures["cpu_per_img_ratio"] = figures["today"]["cpu_s_per_img"] / figures["pipeline"]["cpu_s_per_img"]
    figures["stages_one_thread"] = run_child({**pipeline, "kind": "stages", "folder": str(inputs["photos"])})
    print("stages", figures["stages_one_thread"], flush=True)
    for batch_size in (32, 1000):
        spec = {**pipeline, "batch_size": batch_size, "kind": "folder", "folder": str(inputs["many"])}
        many = run_child(spec)
        many.pop("probs")
        figures[f"pipeline_{args.rss_photos}_photos_batch_{batch_size}"] = many
        print(f"{args.rss_photos} photos, batch {batch_size}", many, flush=True)
    extra_today = ["--full-decode", "--workers", "0"]
    figures["first_result_s"] = {
        "onnx_pipeline": first_result_s(model, inputs["one"], args.face_model, []),
        "onnx_today": first_result_s(
            model, inputs["one"], args.face_model, extra_today, opencv_yunet=bool(args.face_model)
        ),
    }
    if torch_model.is_file():
        figures["first_result_s"]["torch_pipeline"] = first_result_s(torch_model, inputs["one"], args.face_model, [])
    print("first result", figures["first_result_s"], flush=True)
    for name, spec in (("today", today), ("pipeline", pipeline)):
        figures[f"video_{name}"] = run_child({**spec, "kind": "video", "video": str(inputs["video"])})
        print(f"video {name}", figures[f"video_{name}"], flush=True)
    figures["idle_model_threads"] = idle_threads(pipeline, inputs["many"], model, torch_model)
    print("idle model threads", figures["idle_model_threads"], flush=True)
    figures["loader_epoch"] = loader_epoch_s(args.work)
    print("loader", figures["loader_epoch"], flush=True)
    figures["train_epoch"] = train_epoch_s(args.work)
    print("train epoch", figures["train_epoch"], flush=True)
    figures["service_one_photo_s"] = service_s(model, inputs["one"], args.face_model)
    figures["service_over_detect"] = figures["service_one_photo_s"] / figures["pipeline"]["p50_s"]
    print("service", figures["service_one_photo_s"], "ratio", figures["service_over_detect"], flush=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
