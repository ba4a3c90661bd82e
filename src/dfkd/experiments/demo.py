"""`dfkd demo`: the whole job end to end — data, teacher, logit cache, students, evaluation, speed, export, report.

Every step writes a ``DONE`` marker when it finishes, so running the demo again reuses finished steps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dfkd.config import load_config
from dfkd.configs import configs_dir
from dfkd.utils import write_text

logger = logging.getLogger(__name__)

STUDENT_RUNS: tuple[tuple[str, str], ...] = (
    ("student_nokd", "demo_student.yaml"),
    ("student_kd_kl", "demo_student_kd.yaml"),
    ("student_kd_mse", "demo_student_kd.yaml"),
)
# On real faces (--data) the reference's cached-logit KD barely helps; function matching does (docs/results/
# real-faces.md): the teacher runs online on the student's random crops and mixed images (30 epochs, a fifth of the
# 150 that matched the teacher there).
REAL_FACE_TEACHER = "realfaces_teacher.yaml"
REAL_FACE_STUDENT_RUNS: tuple[tuple[str, str], ...] = (
    ("student_nokd", "realfaces_student.yaml"),
    ("student_fm", "realfaces_student_fm.yaml"),
)


def find_configs_dir() -> Path:
    """The folder of the demo presets: ``DFKD_CONFIGS`` when set, else the ones packaged with dfkd."""
    folder = configs_dir()
    if not (folder / "demo_teacher.yaml").is_file():
        raise FileNotFoundError(f"{folder / 'demo_teacher.yaml'} not found: set DFKD_CONFIGS to a folder of presets")
    return folder


@dataclass
class DemoResult:
    """Where the demo put things and how long each step took."""

    out: Path
    report: Path
    timings: dict[str, float] = field(default_factory=dict)


def _step(out: Path, name: str, timings: dict[str, float], action: Callable[[], object]) -> None:
    marker = out / ".done" / name
    if marker.exists():
        logger.info("✓ %s (reused)", name)
        return
    started = time.perf_counter()
    logger.info("▶ %s", name)
    action()
    timings[name] = time.perf_counter() - started
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_text(marker, f"{timings[name]:.1f}\n")
    logger.info("✓ %s in %.1f s", name, timings[name])


def run_demo(
    out: str | os.PathLike[str],
    *,
    data_roots: list[str | os.PathLike[str]] | None = None,
    faces: str = "none",
    face_model: str | None = None,
    configs_dir: str | os.PathLike[str] | None = None,
    per_class: int | None = None,
    overrides: list[str] | None = None,
) -> DemoResult:
    """Run (or resume) the demo pipeline into ``out`` and return the report's location.

    Without ``data_roots`` it makes the synthetic demo set and runs the reference's recipes (students without KD and
    with cached-logit KD-KL / KD-MSE); with them it runs on the user's folders, face-cropped first when
    ``faces="crop"``, with the real-face recipes: a student without KD and one distilled by function matching.
    """
    from dfkd.data.build import build_manifest
    from dfkd.data.demo import DEMO_DEFAULT_PER_CLASS, make_demo_dataset
    from dfkd.data.scan import source_names
    from dfkd.deploy.benchmark import run_benchmark
    from dfkd.distill.logit_cache import compute_logit_cache
    from dfkd.evaluate.evaluator import evaluate_model
    from dfkd.evaluate.report import build_report
    from dfkd.train import train
    from dfkd.utils import write_json

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    configs = Path(configs_dir) if configs_dir else find_configs_dir()
    timings: dict[str, float] = {}
    manifest = out / "manifest.csv"
    runs = out / "runs"
    extra = list(overrides or [])

    if data_roots:
        roots = [Path(r).resolve() for r in data_roots]
        if faces == "crop":
            from dfkd.data.faces import crop_dataset

            cropped = []
            # named as scan names sources (data, data-2): two roots called alike must not share one crop folder
            for root, name in zip(roots, source_names(roots), strict=True):
                target = out / "faces" / name
                _step(
                    out,
                    f"crop-faces-{name}",
                    timings,
                    lambda root=root, target=target: crop_dataset(root, target, face_model=face_model),
                )
                cropped.append(target)
            roots = cropped
        _step(out, "scan", timings, lambda: build_manifest(roots, manifest, verify=True))
    else:
        data = out / "data"
        _step(
            out,
            "make-demo-data",
            timings,
            lambda: make_demo_dataset(data, per_class=per_class or DEMO_DEFAULT_PER_CLASS, seed=0),
        )
        _step(out, "scan", timings, lambda: build_manifest([data], manifest))

    real_faces = bool(data_roots)
    teacher_run = runs / "teacher"
    teacher_file = REAL_FACE_TEACHER if real_faces else "demo_teacher.yaml"
    teacher_config = load_config(configs / teacher_file, [f"data.manifest={manifest}", *extra])
    _step(out, "train-teacher", timings, lambda: train(teacher_config, teacher_run, overwrite=True))
    teacher_model = teacher_run / "model.safetensors"
    _step(
        out,
        "evaluate-teacher",
        timings,
        lambda: evaluate_model(teacher_model, manifest, teacher_run / "eval", threshold="auto"),
    )
    cache = out / "teacher_logits"
    if not real_faces:
        student_base = load_config(configs / "demo_student.yaml", [f"data.manifest={manifest}", *extra])
        _step(
            out,
            "cache-logits",
            timings,
            lambda: compute_logit_cache(
                teacher_model,
                manifest,
                cache,
                resize_size=student_base.data.resize_size,
                input_size=student_base.data.input_size,
                splits=("train", "val"),
                scaled_decode=student_base.data.scaled_decode,
            ),
        )
    run_dirs = [teacher_run]
    for name, config_file in REAL_FACE_STUDENT_RUNS if real_faces else STUDENT_RUNS:
        settings = [f"data.manifest={manifest}", *extra]
        if name == "student_fm":
            settings += [f"teacher.model={teacher_model}"]
        elif name != "student_nokd":
            loss = name.rsplit("_", 1)[-1]
            settings += [f"teacher.model={teacher_model}", f"teacher.cache={cache}", f"distill.loss={loss}"]
        config = load_config(configs / config_file, settings)
        run_dir = runs / name
        _step(
            out, f"train-{name}", timings, lambda config=config, run_dir=run_dir: train(config, run_dir, overwrite=True)
        )
        _step(
            out,
            f"evaluate-{name}",
            timings,
            lambda run_dir=run_dir: evaluate_model(
                run_dir / "model.safetensors", manifest, run_dir / "eval", threshold="auto"
            ),
        )
        run_dirs.append(run_dir)
    test_images = _test_image_folder(out, manifest)
    for run_dir in run_dirs:
        _step(
            out,
            f"benchmark-{run_dir.name}",
            timings,
            lambda run_dir=run_dir: write_json(
                run_dir / "bench.json",
                run_benchmark(
                    run_dir / "model.safetensors",
                    batch_sizes=(1, 32),
                    images_dir=test_images,
                    max_images=256,
                    min_seconds=1.0,
                ),
            ),
        )
    _export_step(out, runs / ("student_fm" if real_faces else "student_kd_mse"), manifest, timings)
    report_dir = out / "report"
    build_report(run_dirs, report_dir)
    write_json(out / "timings.json", timings)
    return DemoResult(out=out, report=report_dir / "report.md", timings=timings)


def _test_image_folder(out: Path, manifest: Path) -> Path:
    """A folder of links to the test split's images (the end-to-end benchmark reads a folder)."""
    from dfkd.data.manifest import read_manifest

    folder = out / "test_images"
    if not folder.exists():
        folder.mkdir(parents=True)
        for index, sample in enumerate(read_manifest(manifest).split("test")):
            os.symlink(sample.path, folder / f"{index:06d}{Path(sample.path).suffix.lower()}")
    return folder


def _export_step(out: Path, run: Path, manifest: Path, timings: dict[str, float]) -> None:
    """Export the distilled student of ``run`` to ONNX and INT8 when the deploy module is present."""
    try:
        from dfkd.deploy.onnx import export_onnx, quantize_int8
    except ImportError:
        logger.info("ONNX export not available in this build; skipping")
        return
    student = run / "model.safetensors"
    onnx_path = out / "export" / f"{run.name}.onnx"
    _step(out, "export-onnx", timings, lambda: export_onnx(student, onnx_path))
    _step(
        out,
        "export-int8",
        timings,
        lambda: quantize_int8(onnx_path, out / "export" / f"{run.name}.int8.onnx", manifest),
    )
