"""What the loop feeds the student: the train / val loaders (resumable sampler), unlabelled batches, mixup."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from lightning_fabric import Fabric
from torch.utils.data import DataLoader

from dfkd.config import RunConfig
from dfkd.data.dataset import ManifestDataset, UnlabeledDataset, build_loader, scaled_decode_side
from dfkd.data.images import list_image_files
from dfkd.data.manifest import Manifest
from dfkd.data.transforms import build_eval_transform, build_train_transform
from dfkd.models.fast import channels_last_input
from dfkd.train.sampler import EpochSampler

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """The datasets, their Fabric-wrapped loaders and the train sampler (positioned per epoch for exact resume)."""

    train_set: ManifestDataset
    val_set: ManifestDataset
    train_loader: DataLoader | None = None
    val_loader: DataLoader | None = None
    train_sampler: EpochSampler | None = None
    unlabeled: Iterator[torch.Tensor] | None = None


def build_datasets(config: RunConfig, manifest: Manifest, view: dict) -> RunData:
    """The train (augmented) and val (eval transform) splits; both must hold images."""
    common = {
        "on_error": config.data.on_error,
        "decode_side": scaled_decode_side(view["resize_size"], config.data.scaled_decode),
    }
    train_set = ManifestDataset(
        manifest,
        "train",
        build_train_transform(**view, **train_view_changes(config)),
        **common,
    )
    val_set = ManifestDataset(manifest, "val", build_eval_transform(**view), **common)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"{manifest.path}: the train and val splits must both hold images")
    if config.data.synthetic_fakes == "none" and len(counts := class_counts(train_set)) < 2:  # SBI makes the fakes
        raise ValueError(
            f"{manifest.path}: the train split holds one class only ({_shown_counts(counts)}); a detector needs "
            "real and fake images to learn from (or data.synthetic_fakes=sbi to make fakes from real faces)"
        )
    if config.data.synthetic_fakes == "sbi":
        from dfkd.data.blend import SelfBlendedDataset, manifest_landmarks

        if config.data.train_patch is not None and config.data.synthetic_parts > 0:
            logger.warning(
                "data.train_patch=%d with data.synthetic_parts=%g: a patch can miss a blend confined to the eyes, "
                "nose or mouth and still be labelled fake, with no blended pixel in it (label noise)",
                config.data.train_patch,
                config.data.synthetic_parts,
            )

        landmarks = manifest_landmarks(manifest)
        blending = {
            "share": config.data.synthetic_share,
            "blend_size": view["resize_size"],
            "parts_share": config.data.synthetic_parts,
            "donor_share": config.data.synthetic_donor,
            "frame_share": config.data.synthetic_frame,
        }
        train_set = SelfBlendedDataset(train_set, landmarks, **blending)
        val_set = SelfBlendedDataset(val_set, landmarks, fixed_seed=config.train.seed, jpeg_p=0.0, **blending)
    return RunData(train_set, val_set)


def train_view_changes(config: RunConfig) -> dict:
    """The random changes of the training view the config asks for (build_train_transform's keywords)."""
    return {
        "augment": config.data.augment,
        "rotation": config.data.rotation,
        "sharpen": config.data.sharpen,
        "train_patch": config.data.train_patch,
    }


def class_counts(dataset: ManifestDataset) -> dict[str, int]:
    """Images per label in a manifest split, e.g. ``{"fake": 12, "real": 10}``."""
    return dict(sorted(Counter(sample.label for sample in dataset.samples).items()))


def _shown_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {label}" for label, count in counts.items())


def single_class_val(config: RunConfig, data: RunData) -> str | None:
    """The val split's class counts as text when it holds one class only (its AUC is then undefined), else None.

    With self-blending the counts are those after its fixed choice of blended reals (a small split may lose them all).
    """
    n_fake = int((data.val_set.labels > 0.5).sum())
    n_real = len(data.val_set.labels) - n_fake
    if n_fake and n_real:
        return None
    blended = " after self-blending" if config.data.synthetic_fakes != "none" else ""
    return f"{n_real} real, {n_fake} fake{blended}"


def build_loaders(fabric: Fabric, config: RunConfig, data: RunData, view: dict) -> None:
    """Set ``data``'s loaders (sharded by rank), and its stream of unlabelled batches when ``data.unlabeled``."""
    rank, world_size = fabric.global_rank, fabric.world_size
    data.train_sampler = EpochSampler(
        len(data.train_set), shuffle=True, seed=config.train.seed, rank=rank, world_size=world_size
    )
    val_sampler = EpochSampler(len(data.val_set), shuffle=False, rank=rank, world_size=world_size)
    loader_args = {"num_workers": config.data.num_workers, "pin_memory": fabric.device.type == "cuda"}
    train_loader = build_loader(
        data.train_set,
        batch_size=config.data.batch_size,
        sampler=data.train_sampler,
        seed=config.train.seed,
        **loader_args,
    )
    val_loader = build_loader(
        data.val_set,
        batch_size=config.data.eval_batch_size or config.data.batch_size,
        sampler=val_sampler,
        **loader_args,
    )
    data.train_loader, data.val_loader = fabric.setup_dataloaders(
        train_loader, val_loader, use_distributed_sampler=False
    )
    if config.data.unlabeled:
        data.unlabeled = unlabeled_batches(fabric, config, view, loader_args)


def memory_format(config: RunConfig, images: torch.Tensor) -> torch.Tensor:
    """The batch in the memory format the model's weights are in (``train.channels_last``)."""
    return channels_last_input(images) if config.train.channels_last else images


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor | None, alpha: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mixup: each image blended with another of the batch by λ ~ Beta(α, α); labels become the same blend.

    Drawn from torch's RNG, so a resumed run mixes the same pairs. With KD the teacher scores the mixed images
    themselves (function matching), so its targets follow the blend without being interpolated.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    lam = max(lam, 1.0 - lam)  # the first image dominates: the blend stays close to a real face
    order = torch.randperm(len(images)).to(images.device)
    mixed = lam * images + (1.0 - lam) * images[order]
    if labels is None:
        return mixed, None
    labels = labels.float()
    return mixed, lam * labels + (1.0 - lam) * labels[order]


def unlabeled_batches(fabric: Fabric, config: RunConfig, view: dict, loader_args: dict) -> Iterator[torch.Tensor]:
    """An endless stream of unlabelled batches (folders in ``data.unlabeled``), augmented like the training view and
    mixed like the labelled batches (``data.mixup``)."""
    paths = [path for folder in config.data.unlabeled for path in list_image_files(folder)]
    if not paths:
        raise ValueError(f"data.unlabeled: no images found under {', '.join(config.data.unlabeled)}")
    logger.info("distilling on %d unlabelled images seen only through the teacher", len(paths))
    dataset = UnlabeledDataset(
        paths,
        build_train_transform(**view, **train_view_changes(config)),
        decode_side=scaled_decode_side(view["resize_size"], config.data.scaled_decode),
    )
    sampler = EpochSampler(
        len(paths), shuffle=True, seed=config.train.seed + 1, rank=fabric.global_rank, world_size=fabric.world_size
    )
    loader = fabric.setup_dataloaders(
        build_loader(
            dataset, batch_size=config.data.batch_size, sampler=sampler, seed=config.train.seed + 1, **loader_args
        ),
        use_distributed_sampler=False,
    )
    return _endless(loader, sampler, config)


def _endless(loader: DataLoader, sampler: EpochSampler, config: RunConfig) -> Iterator[torch.Tensor]:
    epoch = 0
    while True:
        sampler.set_position(epoch)
        for batch in loader:
            if batch is not None and len(batch[0]) > 1:
                images = memory_format(config, batch[0])
                yield mix_batch(images, None, config.data.mixup)[0] if config.data.mixup > 0 else images
        epoch += 1
