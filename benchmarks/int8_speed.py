"""Throughput of the reference ResNet8 on this CPU: INT8 ONNX (onnxruntime) vs fp32 eager PyTorch (and fp32 ONNX).

Usage: python benchmarks/int8_speed.py [--model MODEL.safetensors] [--manifest MANIFEST.csv] [--batch 32] [--seconds 3]

Without --model it uses a randomly initialised reference ResNet8 (224x224 input; speed does not depend on the
weights). Calibration images come from --manifest, else from ../shared/data/realfaces-dev (a 7:2:1 manifest is
written to a temporary folder), else from synthetic images. Rounds are interleaved so background load affects every
runtime alike; the median images/s of the rounds is printed. Model-only: inputs are preprocessed once beforehand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from dfkd.deploy.onnx import export_onnx, quantize_int8
from dfkd.models import create_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
REALFACES = ROOT.parent / "shared" / "data" / "realfaces-dev"


def calibration_manifest(folder: Path, manifest: Path | None) -> Path:
    """The given manifest, else one over realfaces-dev, else over 64 synthetic images."""
    from dfkd.data import build_manifest

    if manifest is not None:
        return manifest
    root = REALFACES
    if not root.is_dir():
        root = folder / "synthetic"
        rng = np.random.default_rng(0)
        for index in range(64):
            label = ("real", "fake")[index % 2]
            path = root / label / f"{index:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
    out = folder / "manifest.csv"
    build_manifest([root], out)
    return out


def images_per_second(run: Callable[[], object], batch: int, seconds: float) -> float:
    """Images per second of repeated ``run`` calls for about ``seconds``."""
    run()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    return count * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = args.model
        if model_path is None:
            torch.manual_seed(0)
            model_path = folder / "resnet8.safetensors"
            save_model(create_model("resnet8"), model_path)
        model, record = load_model(model_path)
        size = record["preprocessing"]["input_size"]
        fp32_path, int8_path = folder / "model.onnx", folder / "model.int8.onnx"
        manifest = calibration_manifest(folder, args.manifest)
        parity = export_onnx(model_path, fp32_path, check_images=[manifest])["parity"]
        int8 = quantize_int8(fp32_path, int8_path, manifest, n_calibration=128, max_eval=400)

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        sessions = {
            name: ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
            for name, path in (("onnx fp32", fp32_path), ("onnx int8", int8_path))
        }
        batch = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(np.float32)
        tensor = torch.from_numpy(batch)

        def eager() -> object:
            with torch.inference_mode():
                return model(tensor)

        runners: dict[str, Callable[[], object]] = {"torch fp32 eager": eager}
        for name, session in sessions.items():
            runners[name] = lambda session=session: session.run(None, {"images": batch})
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                rates[name].append(images_per_second(run, args.batch, args.seconds))

    arch = record["architecture"]["name"]
    print(f"{arch} at {size}x{size}, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"onnxruntime {ort.__version__}; median of {args.rounds} interleaved rounds of {args.seconds:.0f} s")
    print(f"fp32 parity: max |Δ logit| {parity['max_abs_logit_diff']:.2e} on {parity['n_images']} images")
    print(
        f"INT8 check on {int8['n_images']} val images: accuracy fp32 {int8['accuracy_fp32']:.2f} %, "
        f"INT8 {int8['accuracy_int8']:.2f} % (Δ {int8['accuracy_delta_points']:+.2f}), "
        f"agreement {int8['agreement']:.2f} %, max |Δ logit| {int8['max_abs_logit_diff']:.3f}"
    )
    baseline = statistics.median(rates["torch fp32 eager"])
    print("| runtime | images/s | vs torch fp32 eager |")
    print("|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
