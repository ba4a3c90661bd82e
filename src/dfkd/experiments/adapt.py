"""Adapting a trained model to a collection from genuine photos of it alone (``dfkd adapt``).

A detector ranks a collection's fakes far better when that collection's genuine photos were in its training: the
bundle's recipe told an FFHQ-style collection's unseen face swaps from its photos with AUC 0.88 when it knew 350 of
them, 0.62 when it knew none (docs/results/generalisation.md). A user of a trained model has neither its data nor its
teacher, only photos of their own. Here the model is fine-tuned on those photos and their self-blended fakes (made
from each photo on the fly; no fake is needed), with the model as it was as its own teacher, run online on the same
views (``alpha`` of the loss). The photos are face-cropped as the model's card says, a fifth of them is kept aside to
set the threshold (the recipe's: at most 5 % called fake), and the result is an ordinary model file.

Measured on a collection the bundle's recipe never saw (docs/results/calibration.md), 100 of its photos raised the
unseen swaps' AUC from 0.62 to 0.85 without that teacher, but StyleGAN2 fell from 1.00 to 0.57; at alpha 0.5 to 0.82
and 0.89; at alpha 0.8, the default, to 0.74 and 0.99: what the model knew is kept. Hand-made Photoshop composites
were not learnt from their collection's photos (AUC 0.55 before and after).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ADAPT_RECIPE", "DEFAULT_ALPHA", "MIN_PHOTOS", "AdaptResult", "adapt_model"]

ADAPT_RECIPE = "general_student_sbi_fm"  # self-blended fakes, quality augmentation, function matching, fpr=0.05
MIN_PHOTOS = 20  # a fifth of them sets the threshold: fewer leave it to chance
VALIDATION_SHARE = 0.2
DEFAULT_ALPHA = 0.8  # keeps StyleGAN2 AUC 0.99 where 0.5 fell to 0.89 (benchmarks/adapt.py)


@dataclass
class AdaptResult:
    """What :func:`adapt_model` trained on and wrote."""

    out: Path
    n_train: int
    n_val: int
    threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)  # photos without a usable face, with the reason


def _crop_folder(work: Path, photos: Path) -> Path:
    """Where ``photos``' crops go: one folder per photo folder, named by its path, so a run with the folders in
    another order, or a later run on another collection in the same work folder, resumes each from its own crops."""
    return work / f"faces-{hashlib.sha1(str(photos.resolve()).encode()).hexdigest()[:8]}"


def _face_crops(
    photos: Path, crops: Path, card: Any, face_model: str | os.PathLike[str] | None
) -> tuple[Path, list[Path], list[tuple[str, str]]]:
    """The crops' folder, the crops of the photos now under ``photos`` (cropped as the model's training images were,
    into ``crops``, resumable) and the photos that got none, with the reason; the photos as they are when the model
    has no face-crop record (its training images were used whole).

    Only crops of photos still there count: a photo removed since an earlier run (a fake found among them) must not
    be learnt as genuine from the crop that run left behind.
    """
    from dfkd.data.faces import crop_dataset, list_images
    from dfkd.inference.detector import chosen_face_detector

    present = list_images(photos)
    if card.face_crop is None:
        logger.warning("the model has no face-crop record: the photos are used as they are, as face crops")
        return photos, [photos / relative for relative in present], []
    crop = card.face_crop
    detector = chosen_face_detector(crop, "auto", face_model)  # the card's when available here, as detect chooses
    report = crop_dataset(
        photos, crops, margin=crop.margin, size=crop.size, face_model=face_model, detector=detector, align=crop.align
    )
    return crops, [crops / relative for relative in present if (crops / relative).is_file()], list(report.skipped)


def _reals_manifest(roots: list[Path], images: list[Path], out: Path, seed: int) -> tuple[Path, int, int]:
    """A manifest of ``images`` (in the crop folders ``roots``) as genuine photos: ``VALIDATION_SHARE`` of them
    (seeded) for validation."""
    from dfkd.data.crop_geometry import face_crop_of_roots
    from dfkd.data.manifest import write_manifest
    from dfkd.data.scan import Sample

    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    n_val = max(2, round(VALIDATION_SHARE * len(images)))
    validation = set(order[:n_val])
    rows = [
        Sample(str(path.resolve()), "real", "val" if index in validation else "train", "own", path.stat().st_size)
        for index, path in enumerate(images)
    ]
    face_crop, warnings = face_crop_of_roots(roots)
    info = {"roots": [str(root.resolve()) for root in roots], "face_crop": face_crop, "face_crop_warnings": warnings}
    path = out / "manifest.csv"
    write_manifest(path, rows, {key: value for key, value in info.items() if value is not None})
    return path, len(images) - n_val, n_val


def adapt_model(
    model: str | os.PathLike[str],
    photos: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    work: str | os.PathLike[str],
    face_model: str | os.PathLike[str] | None = None,
    epochs: int = 30,
    lr: float = 1e-3,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 42,
    overrides: list[str] | None = None,
) -> AdaptResult:
    """Fine-tune ``model`` (a dfkd ``.safetensors`` file) on the genuine photos under ``photos`` (a folder, or several)
    and their self-blended fakes, taught by itself (``alpha`` of the loss; 0: plain training), and write the result
    to ``out``.

    ``work`` holds the face crops (resumable), the manifest and the training run; ``overrides`` (``key=value``) change
    the recipe's other settings (``data.batch_size=16``). Raises ValueError for an ONNX model,
    bad settings or too few photos with a face.
    """
    from dfkd.card import TrainingSummary
    from dfkd.config import apply_overrides, read_config_file, validate_config
    from dfkd.configs import resolve_config
    from dfkd.evaluate.evaluator import set_threshold
    from dfkd.inference.backends import is_onnx_file
    from dfkd.models.checkpoint import read_model_card, update_card
    from dfkd.train import train

    model, out, work = Path(model), Path(out), Path(work)
    folders = [Path(photos)] if isinstance(photos, (str, os.PathLike)) else [Path(folder) for folder in photos]
    folders = list({folder.resolve(): folder for folder in folders}.values())  # a folder named twice counts once
    if not folders:
        raise ValueError("no folder of photos given")
    if is_onnx_file(model):
        raise ValueError(f"{model}: adapting retrains the network: give the PyTorch model file (.safetensors)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (the share of the loss the model as it was teaches), got {alpha}")
    if epochs < 1 or not lr > 0:
        raise ValueError(f"epochs must be at least 1 and lr positive, got epochs={epochs}, lr={lr}")
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder of photos")
        for other in folders:  # its photos would be read twice, and could both train and set the threshold
            if other is not folder and folder.resolve().is_relative_to(other.resolve()):
                raise ValueError(f"{folder} is inside {other}, which is searched recursively: give one of them")
    card = read_model_card(model)
    roots, images, skipped = [], [], []
    for folder in folders:
        crops = _crop_folder(work, folder)
        root, found, missed = _face_crops(folder, crops, card, face_model)
        roots.append(root)
        images += found
        skipped += missed
    if len(images) < MIN_PHOTOS:
        raise ValueError(
            f"{', '.join(str(folder) for folder in folders)}: {len(images)} photos with a usable face; adapting needs "
            f"at least {MIN_PHOTOS} (100 were measured, docs/results/calibration.md)"
        )
    manifest, n_train, n_val = _reals_manifest(roots, images, work, seed)

    # Set as values, not as "key=value" text: a folder name with ": " or "#" would not survive YAML parsing.
    settings = read_config_file(resolve_config(ADAPT_RECIPE))
    preprocessing = card.preprocessing
    settings.setdefault("data", {}).update(
        manifest=str(manifest),
        resize_size=preprocessing.resize_size,
        input_size=preprocessing.input_size,
        mean=list(preprocessing.mean),
        std=list(preprocessing.std),
        scaled_decode=preprocessing.scaled_decode,
        mixup=0.0,
    )
    settings["model"] = {
        "name": card.architecture.name,
        "kwargs": dict(card.architecture.kwargs),
        "pretrained": str(model.resolve()),
    }
    settings.setdefault("optim", {})["lr"] = lr
    settings.setdefault("train", {}).update(epochs=epochs, patience=epochs, ema_decay=None, seed=seed)
    if alpha > 0:  # the model as it was, online on the same views: what it knew of other fakes is kept
        settings["teacher"] = {"model": str(model.resolve()), "min_auc": 0.0}
        settings.setdefault("distill", {})["alpha"] = alpha
    else:
        settings.setdefault("distill", {})["loss"] = "none"
    apply_overrides(settings, list(overrides or []))
    config = validate_config(settings, origin=f"{ADAPT_RECIPE} (adapt)")
    run = work / "run"
    train(config, run, overwrite=True)
    threshold = set_threshold(run / "model.safetensors", manifest, config.train.threshold)

    adapted = read_model_card(run / "model.safetensors")
    summary = adapted.training.model_dump() if adapted.training is not None else {}
    summary["adapted_from"] = {
        "model": model.name,
        "threshold": card.threshold,
        "photos": f"{n_train} genuine photos trained on (and their self-blended fakes), {n_val} set the threshold"
        + (f"; from {len(folders)} folders" if len(folders) > 1 else ""),
        "teacher": f"the model itself, alpha {alpha:g}" if alpha > 0 else "none",
    }
    card_out = adapted.model_copy(update={"training": TrainingSummary.model_validate(summary)})
    update_card(run / "model.safetensors", card_out, out=out)
    return AdaptResult(out=out, n_train=n_train, n_val=n_val, threshold=threshold, skipped=skipped)
