"""Speed: model-only throughput and latency, end-to-end from JPEG files, and the reference's own FPS measure.

JSON keys written by `dfkd benchmark` (all throughputs in images per second):
- ``model``, ``architecture``, ``backend`` (torch|onnx), ``device``, ``dtype``, ``input_size``, ``params``, ``gflops``
- ``settings``: ``threads``, ``channels_last``, ``compiled``, ``inference_mode``
- ``model_only``: ``{"<batch>": {"throughput", "latency_ms_p50", "latency_ms_p95", "repeats"}}`` — warm-up first,
  synchronised, throughput from the median batch time; latencies are per forward call
- ``end_to_end``: ``{"images", "batch_size", "workers", "throughput"}`` — JPEG decode → preprocessing → loader → model
- ``reference_measure``: the reference's FPS (images / wall time of a DataLoader loop, 2 workers, batch 32, eager
  fp32, decoding included), labelled as such
- ``environment``: torch version, CPU capability, CUDA device name
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dfkd.data.images import list_image_files as list_images
from dfkd.data.images import open_image
from dfkd.data.transforms import build_eval_transform

logger = logging.getLogger(__name__)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every image under a folder, decoded and preprocessed (for end-to-end timing)."""

    def __init__(self, paths: list[str], transform: Callable) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(open_image(self.paths[index]))


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than fp32."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if "AMX" in capability:
        return True
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare_torch_model(
    model: torch.nn.Module, device: torch.device, *, channels_last: bool = True, compile_model: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model on ``device`` in eval mode, channels-last and optionally compiled; returns the callable to time."""
    model = model.eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    return model


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "fp32":
        return contextlib.nullcontext()
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=torch_dtype)


def measure_model_only(
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    input_size: int,
    batch_size: int,
    device: torch.device,
    dtype: str = "fp32",
    channels_last: bool = True,
    min_seconds: float = 2.0,
    warmup: int = 3,
    max_repeats: int = 200,
) -> dict:
    """Median-of-repeats throughput and latency percentiles of one forward at ``batch_size``."""
    images = torch.randn(batch_size, 3, input_size, input_size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    times: list[float] = []
    with torch.inference_mode(), _autocast(device, dtype):
        for _ in range(warmup):
            forward(images)
        _sync(device)
        started = time.perf_counter()
        while len(times) < max_repeats and (time.perf_counter() - started < min_seconds or len(times) < 5):
            tick = time.perf_counter()
            forward(images)
            _sync(device)
            times.append(time.perf_counter() - tick)
    median = statistics.median(times)
    return {
        "throughput": batch_size / median,
        "latency_ms_p50": float(np.percentile(times, 50) * 1000),
        "latency_ms_p95": float(np.percentile(times, 95) * 1000),
        "repeats": len(times),
    }


def measure_loader_loop(
    forward: Callable[[torch.Tensor], torch.Tensor],
    paths: list[str],
    preprocessing: dict,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    dtype: str = "fp32",
    channels_last: bool = False,
) -> dict:
    """Images / wall time of a DataLoader loop from JPEG files through preprocessing and the model."""
    transform = build_eval_transform(
        preprocessing["resize_size"], preprocessing["input_size"], preprocessing["mean"], preprocessing["std"]
    )
    loader = torch.utils.data.DataLoader(
        ImageFolderDataset(paths, transform),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    started = time.perf_counter()
    with torch.inference_mode(), _autocast(device, dtype):
        for images in loader:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            forward(images)
        _sync(device)
    seconds = time.perf_counter() - started
    return {"images": len(paths), "batch_size": batch_size, "workers": workers, "throughput": len(paths) / seconds}


def onnx_forward(
    onnx_path: str | os.PathLike[str], threads: int | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An onnxruntime session wrapped as a tensor → tensor callable (CPU execution provider)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def forward(images: torch.Tensor) -> torch.Tensor:
        array = images.detach().float().contiguous().cpu().numpy()
        return torch.from_numpy(session.run(None, {input_name: array})[0])

    return forward


def environment() -> dict:
    """Versions and hardware the numbers were measured on."""
    info = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def measure_cuda_decode_loop(
    forward: Callable[[torch.Tensor], torch.Tensor],
    paths: list[str],
    preprocessing: dict,
    *,
    batch_size: int,
    device: torch.device,
    dtype: str = "fp32",
) -> dict:
    """End to end on CUDA with JPEG decoding on the GPU (``torchvision.io.decode_jpeg(device="cuda")``)."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as tvf

    mean = torch.tensor(preprocessing["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing["std"], device=device).view(1, 3, 1, 1)
    started = time.perf_counter()
    with torch.inference_mode(), _autocast(device, dtype):
        for start in range(0, len(paths), batch_size):
            encoded = [read_file(p) for p in paths[start : start + batch_size]]
            decoded = decode_jpeg(encoded, device=device)
            images = [
                tvf.center_crop(
                    tvf.resize(img, preprocessing["resize_size"], antialias=True), preprocessing["input_size"]
                )
                for img in decoded
            ]
            batch = (torch.stack(images).float() / 255.0 - mean) / std
            forward(batch.contiguous(memory_format=torch.channels_last))
        _sync(device)
    seconds = time.perf_counter() - started
    return {
        "images": len(paths),
        "batch_size": batch_size,
        "workers": 0,
        "gpu_decode": True,
        "throughput": len(paths) / seconds,
    }


def run_benchmark(
    model: str | os.PathLike[str],
    *,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = (1, 32),
    dtype: str = "fp32",
    backend: str = "torch",
    images_dir: str | os.PathLike[str] | None = None,
    input_size: int | None = None,
    channels_last: bool = True,
    compile_model: bool = False,
    max_images: int = 512,
    workers: int = 2,
    min_seconds: float = 2.0,
    reference_measure: bool = True,
) -> dict:
    """Benchmark a model file or a registered architecture name (random weights) as the module docstring describes."""
    from dfkd.models import count_flops, count_params, create_model, default_preprocessing, load_model

    if dtype not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"dtype must be fp32, bf16 or fp16, got {dtype!r}")
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be torch or onnx, got {backend!r}")
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    if dtype == "bf16" and torch_device.type == "cpu" and not cpu_supports_bf16():
        logger.warning("this CPU has no native bf16: bf16 runs emulated and slower than fp32")
    model_path = Path(model)
    onnx_path = None
    if model_path.suffix == ".onnx":
        from dfkd.deploy.onnx_format import read_onnx_card

        onnx_path, backend = model_path, "onnx"
        card = read_onnx_card(model_path)
        name = card.architecture.name
        net = create_model(name, **card.architecture.kwargs)
        preprocessing = card.preprocessing.as_dict()
        if input_size is not None and input_size != card.preprocessing.input_size:
            raise ValueError(
                f"{model_path}: exported for {card.preprocessing.input_size}-px inputs, so it cannot run at "
                f"--input-size {input_size}: benchmark the .safetensors model, or export it at that size"
            )
    elif model_path.exists():
        net, card = load_model(model_path)
        name, preprocessing = card.architecture.name, card.preprocessing.as_dict()
    else:
        name = str(model)
        net = create_model(name)
        preprocessing = default_preprocessing(name)
    if backend == "onnx" and dtype != "fp32":  # onnxruntime runs the exported graph in fp32 (INT8: its own file)
        raise ValueError(f"--dtype {dtype} applies to the torch backend; an ONNX model runs as exported (fp32)")
    size = input_size or int(preprocessing["input_size"])
    preprocessing = {**preprocessing, "input_size": size, "resize_size": max(size, int(preprocessing["resize_size"]))}
    params = count_params(net)
    gflops = count_flops(net, size) / 1e9
    if backend == "onnx":
        if onnx_path is None:
            import tempfile

            from dfkd.deploy.onnx import export_onnx

            if not model_path.exists():
                from dfkd.models import save_model

                temp_model = Path(tempfile.mkdtemp()) / f"{name}.safetensors"
                save_model(net, temp_model)
                model_path = temp_model
            onnx_path = Path(tempfile.mkdtemp()) / f"{name}.onnx"
            export_onnx(model_path, onnx_path)
        forward = onnx_forward(onnx_path, threads=torch.get_num_threads())
        channels_last = False
    else:
        forward = prepare_torch_model(net, torch_device, channels_last=channels_last, compile_model=compile_model)
    result: dict = {
        "model": str(model),
        "architecture": name,
        "backend": backend,
        "device": str(torch_device),
        "dtype": dtype,
        "input_size": size,
        "params": params,
        "gflops": gflops,
        "settings": {
            "threads": torch.get_num_threads(),
            "channels_last": channels_last,
            "compiled": compile_model,
            "inference_mode": True,
        },
        "model_only": {},
        "end_to_end": None,
        "reference_measure": None,
        "environment": environment(),
    }
    for batch_size in batch_sizes:
        result["model_only"][str(batch_size)] = measure_model_only(
            forward,
            input_size=size,
            batch_size=batch_size,
            device=torch_device,
            dtype=dtype,
            channels_last=channels_last,
            min_seconds=min_seconds,
        )
    if images_dir is not None:
        paths = list_images(images_dir, limit=max_images)
        if not paths:
            raise ValueError(f"no images found under {images_dir}")
        e2e_batch = max(batch_sizes)
        if torch_device.type == "cuda" and backend == "torch":
            result["end_to_end"] = measure_cuda_decode_loop(
                forward, paths, preprocessing, batch_size=e2e_batch, device=torch_device, dtype=dtype
            )
        else:
            result["end_to_end"] = measure_loader_loop(
                forward,
                paths,
                preprocessing,
                batch_size=e2e_batch,
                workers=workers,
                device=torch_device,
                dtype=dtype,
                channels_last=channels_last,
            )
        if reference_measure:
            eager = net.eval().to(torch_device)
            reference = measure_loader_loop(eager, paths, preprocessing, batch_size=32, workers=2, device=torch_device)
            reference["note"] = (
                "the reference's FPS: images / wall time of a DataLoader loop (2 workers, batch 32, eager fp32)"
            )
            result["reference_measure"] = reference
    return result
