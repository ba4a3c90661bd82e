"""A torch Dataset over one split of a manifest, and the loader builder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from dfkd.data.images import DecodedImage, ImageLoadError, decode_image
from dfkd.data.manifest import Manifest
from dfkd.labels import label_id

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


def scaled_decode_side(resize_size: int, scaled_decode: bool) -> int | None:
    """The ``decode_side`` for images whose transform starts with ``Resize(resize_size)``: that side with
    ``scaled_decode`` (``data.scaled_decode``, the card's ``preprocessing.scaled_decode``), else ``None``, a full
    decode. A JPEG decoded DCT-scaled to the resize side loses nothing the resize keeps."""
    return resize_size if scaled_decode else None


class ManifestDataset(Dataset):
    """Images of one manifest split, yielding ``(image, label, index)`` with label 1 = fake.

    ``index`` is the position in the split, so per-sample extras (cached teacher logits) line up with it.
    ``decode_side`` (the transform's resize side) decodes each JPEG DCT-scaled to the smallest size whose shorter side
    keeps it (``decode_image``), which only differs from a full decode when the stored image is twice that or more;
    ``None`` (the default) keeps the reference's exact full decode.
    With ``on_error="skip"`` an unreadable file yields ``None`` (dropped by :func:`collate_skipping`) and is logged;
    with ``"raise"`` it raises :class:`ImageLoadError` naming the file.
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        transform: Callable | None = None,
        *,
        on_error: OnError = "raise",
        decode_side: int | None = None,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.samples = manifest.split(split)
        self.split = split
        self.transform = transform
        self.on_error = on_error
        self.decode_side = decode_side
        self.labels = torch.tensor([label_id(s.label) for s in self.samples], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def load_decoded(self, index: int) -> DecodedImage | None:
        """Row ``index``'s image, untransformed, with its stored size; ``None`` for an unreadable file with
        ``on_error="skip"`` (logged)."""
        try:
            return decode_image(self.samples[index].path, min_short_side=self.decode_side or 0)
        except ImageLoadError as error:
            if self.on_error == "raise":
                raise
            logger.warning("skipping unreadable image %s", error)
            return None

    def load_image(self, index: int) -> Image.Image | None:
        """Row ``index``'s image, untransformed (see :meth:`load_decoded`)."""
        decoded = self.load_decoded(index)
        return None if decoded is None else decoded.image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        image = self.load_image(index)
        if image is None:
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index], index


class UnlabeledDataset(Dataset):
    """Images without labels (seen only through the teacher during distillation), yielding ``(image, index)``."""

    def __init__(self, paths: list[str], transform: Callable | None = None, *, decode_side: int | None = None) -> None:
        self.paths, self.transform, self.decode_side = paths, transform, decode_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            image = decode_image(self.paths[index], min_short_side=self.decode_side or 0).image
        except ImageLoadError as error:
            logger.warning("skipping unreadable unlabelled image %s", error)
            return None
        return (self.transform(image) if self.transform is not None else image), index


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Collate ``(image, label, index)`` items, dropping ``None`` (skipped files); ``None`` if all were skipped."""
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    return default_collate(kept)


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = True,
    drop_last: bool = False,
    seed: int | None = None,
    sampler: torch.utils.data.Sampler | None = None,
) -> DataLoader:
    """A DataLoader with dfkd's collate; persistent workers only when there are workers.

    ``seed`` gives the loader its own generator, so shuffling and worker seeds never draw from the global RNG.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        drop_last=drop_last,
        collate_fn=collate_skipping,
        generator=generator,
    )
