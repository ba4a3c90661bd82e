"""Speed goals of issue [D], measured in one run on this machine and printed as ratios.

1. The reference ResNet8 through dfkd's fastest CPU path vs the reference's way (eager fp32 PyTorch, NCHW,
   batch 32), model-only at 224×224. Goal ≥ 3×.
2. The fastest student of the same size (resnet8_fast, same parameter count) end to end from 256×256 JPEG files
   vs the reference ResNet8 end to end the reference's way (DataLoader, 2 workers, batch 32, eager fp32). Goal ≥ 20×.

Paths tried: torch channels_last + inference_mode, onnxruntime fp32, onnxruntime static INT8 (calibrated on
synthetic demo images; dfkd's default keeps the image-reading stem conv in fp32, the last path quantises it too),
all at batch 32 on the CPU.

    python benchmarks/student_speed.py [--seconds 3] [--images 1024]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dfkd.data import build_manifest
from dfkd.data.demo import make_demo_dataset
from dfkd.deploy.benchmark import list_images, measure_loader_loop, measure_model_only, onnx_forward
from dfkd.deploy.onnx import export_onnx, quantize_int8
from dfkd.models import create_model, save_model

PREPROCESSING = {"resize_size": 256, "input_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _paths(name: str, work: Path, manifest: Path) -> dict:
    """Callables for each path of one architecture (random weights: speed does not depend on them)."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    model_file = work / f"{name}.safetensors"
    save_model(model, model_file, {"preprocessing": PREPROCESSING})
    onnx_file = work / f"{name}.onnx"
    export_onnx(model_file, onnx_file)
    int8_file = work / f"{name}.int8.onnx"
    quantize_int8(onnx_file, int8_file, manifest, n_calibration=32, max_eval=64)
    int8_all_file = work / f"{name}.int8-all.onnx"
    quantize_int8(onnx_file, int8_all_file, manifest, n_calibration=32, max_eval=64, fp32_stem=False)
    channels_last = create_model(name).eval().to(memory_format=torch.channels_last)
    channels_last.load_state_dict(model.state_dict())
    threads = torch.get_num_threads()
    return {
        "eager fp32 NCHW (reference's way)": (model, False),
        "torch channels_last": (channels_last, True),
        "onnxruntime fp32": (onnx_forward(onnx_file, threads), False),
        "onnxruntime int8 (dfkd default, fp32 stem)": (onnx_forward(int8_file, threads), False),
        "onnxruntime int8 (stem quantised too)": (onnx_forward(int8_all_file, threads), False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dfkd-speed-"))
    data = make_demo_dataset(work / "data", per_class=max(20, args.images // 2), seed=1)
    manifest = work / "manifest.csv"
    build_manifest([data], manifest)
    images = list_images(data, limit=args.images)
    device = torch.device("cpu")
    print(
        f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}; model-only at 224x224, "
        f"batch 32, {args.seconds:.0f} s per measure"
    )
    results: dict[str, dict[str, float]] = {}
    forwards: dict[str, dict] = {}
    for name in ("resnet8", "resnet8_fast"):
        forwards[name] = _paths(name, work, manifest)
        results[name] = {}
        for path, (forward, channels_last) in forwards[name].items():
            row = measure_model_only(
                forward,
                input_size=224,
                batch_size=32,
                device=device,
                channels_last=channels_last,
                min_seconds=args.seconds,
            )
            results[name][path] = row["throughput"]
            print(f"  {name:13s} {path:44s} {row['throughput']:9.1f} img/s")
    reference = results["resnet8"]["eager fp32 NCHW (reference's way)"]
    best_path = max(results["resnet8"], key=results["resnet8"].get)
    print(
        f"\n1. resnet8 fastest path ({best_path}) vs the reference's way: "
        f"{results['resnet8'][best_path] / reference:.2f}x (goal >= 3x)"
    )

    ref_e2e = measure_loader_loop(
        forwards["resnet8"]["eager fp32 NCHW (reference's way)"][0],
        images,
        PREPROCESSING,
        batch_size=32,
        workers=2,
        device=device,
    )["throughput"]
    fast_path = max(results["resnet8_fast"], key=results["resnet8_fast"].get)
    forward, channels_last = forwards["resnet8_fast"][fast_path]
    fast_e2e = measure_loader_loop(
        forward, images, PREPROCESSING, batch_size=32, workers=2, device=device, channels_last=channels_last
    )["throughput"]
    print(
        f"2. end to end from {len(images)} JPEG files (2 loader workers, batch 32): reference resnet8 eager "
        f"{ref_e2e:.1f} img/s; resnet8_fast via {fast_path} {fast_e2e:.1f} img/s: "
        f"{fast_e2e / ref_e2e:.1f}x (goal >= 20x)"
    )


if __name__ == "__main__":
    main()
