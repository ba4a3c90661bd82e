"""Preprocessing: the reference's eval pipeline exactly, and named training augmentations."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from typing import Literal

from PIL import Image, ImageFilter
from torchvision import transforms

from dfkd.card import IMAGENET_MEAN, IMAGENET_STD

AUGMENTS: tuple[str, ...] = ("none", "basic", "robust", "crop", "quality")
Augment = Literal["none", "basic", "robust", "crop", "quality"]


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """The image as a JPEG of ``quality`` would decode (what a re-upload or a messenger does to it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


class RandomJPEG:
    """Re-compress a PIL image as JPEG at a random quality in ``[low, high]`` with probability ``p``."""

    def __init__(self, quality: tuple[int, int] = (40, 100), p: float = 0.5) -> None:
        self.quality, self.p = quality, p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return jpeg_roundtrip(image, random.randint(*self.quality))

    def __repr__(self) -> str:
        return f"RandomJPEG(quality={self.quality}, p={self.p})"


class RandomGaussianBlur:
    """Blur a PIL image with a random radius in ``[0.1, max_radius]`` with probability ``p``."""

    def __init__(self, max_radius: float = 1.5, p: float = 0.3) -> None:
        self.max_radius, self.p = max_radius, p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, self.max_radius)))

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(max_radius={self.max_radius}, p={self.p})"


class RandomSharpen:
    """Unsharp-mask a PIL image (radius 0.5-2.5 px, 50-150 %) with probability ``p``: the edge halos camera and
    phone pipelines add to photos."""

    def __init__(self, p: float = 0.3) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return image.filter(
            ImageFilter.UnsharpMask(radius=random.uniform(0.5, 2.5), percent=int(random.uniform(50, 150)), threshold=2)
        )

    def __repr__(self) -> str:
        return f"RandomSharpen(p={self.p})"


class RandomDownUp:
    """Downscale a PIL image by a random factor in ``[low, 1)`` and back up (lost detail), with probability ``p``."""

    def __init__(self, low: float = 0.4, p: float = 0.3) -> None:
        self.low, self.p = low, p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        factor = random.uniform(self.low, 1.0)
        small = image.resize(
            (max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.BILINEAR
        )
        return small.resize(image.size, Image.BILINEAR)

    def __repr__(self) -> str:
        return f"RandomDownUp(low={self.low}, p={self.p})"


class RandomNoise:
    """Add Gaussian pixel noise of a random sigma in ``[1, max_sigma]`` (0-255 scale) with probability ``p``."""

    def __init__(self, max_sigma: float = 8.0, p: float = 0.3) -> None:
        self.max_sigma, self.p = max_sigma, p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        import numpy as np

        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        noise = np.random.default_rng(random.getrandbits(32)).normal(0, random.uniform(1, self.max_sigma), pixels.shape)
        return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))

    def __repr__(self) -> str:
        return f"RandomNoise(max_sigma={self.max_sigma}, p={self.p})"


def _tail(mean: Sequence[float], std: Sequence[float]) -> list:
    return [transforms.ToTensor(), transforms.Normalize(mean=list(mean), std=list(std))]


def build_eval_transform(
    resize_size: int = 256,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """The reference pipeline: Resize(resize) → CenterCrop(input) → ToTensor → Normalize. PIL in, ``[3, H, W]`` out."""
    return transforms.Compose([transforms.Resize(resize_size), transforms.CenterCrop(input_size), *_tail(mean, std)])


def build_train_transform(
    resize_size: int = 256,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    augment: Augment | str = "none",
    rotation: float = 0.0,
    sharpen: float = 0.0,
    train_patch: int | None = None,
) -> transforms.Compose:
    """Training preprocessing.

    ``none`` is the reference's (identical to eval); ``basic`` adds a horizontal flip; ``robust`` adds JPEG
    re-compression (quality 40–100), Gaussian blur and mild colour jitter; ``crop`` adds random crops (scale
    0.5–1 of the resized image) and a flip, the view that online distillation benefits from; ``quality`` adds to
    milder random crops (0.7–1) what cameras, messengers and uploads do to photos — colour jitter, blur, noise,
    down-and-up scaling, JPEG — applied to reals and fakes alike, so that image quality tells no class.
    ``rotation`` (degrees, any augment but ``none``) turns every training image by a random angle within ±rotation,
    so how faces are aligned (level eyes of FFHQ-style portraits, tilted heads of snapshots) tells no class either.
    ``sharpen`` (a probability, any augment but ``none``) unsharp-masks training images as camera pipelines do, so
    that edge halos mean "genuine photo" less. ``train_patch`` (px, any augment but ``none``) ends with a random
    patch of that side, after every other change, so the network sees local traces and never a whole face.
    """
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}: expected one of {', '.join(AUGMENTS)}")
    if augment == "none":
        return build_eval_transform(resize_size, input_size, mean, std)
    steps: list = [transforms.Resize(resize_size)]
    if rotation > 0:
        steps.append(transforms.RandomRotation(rotation, interpolation=transforms.InterpolationMode.BILINEAR))
    if augment in ("crop", "quality"):
        scale = (0.5, 1.0) if augment == "crop" else (0.7, 1.0)
        steps.append(transforms.RandomResizedCrop(input_size, scale=scale, ratio=(0.9, 1.1)))
    else:
        steps.append(transforms.CenterCrop(input_size))
    steps.append(transforms.RandomHorizontalFlip())
    if sharpen > 0:
        steps.append(RandomSharpen(p=sharpen))
    if augment == "robust":
        steps += [
            transforms.RandomApply([transforms.ColorJitter(0.1, 0.1, 0.1, 0.02)], p=0.5),
            RandomGaussianBlur(max_radius=1.5, p=0.3),
            RandomJPEG(quality=(40, 100), p=0.5),
        ]
    if augment == "quality":
        steps += [
            transforms.RandomApply([transforms.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.5),
            RandomGaussianBlur(max_radius=1.2, p=0.2),
            RandomDownUp(low=0.4, p=0.3),
            RandomNoise(max_sigma=6.0, p=0.2),
            RandomJPEG(quality=(50, 100), p=0.5),
        ]
    if train_patch:
        steps.append(transforms.RandomCrop(train_patch))
    return transforms.Compose([*steps, *_tail(mean, std)])


def is_random_augment(augment: str) -> bool:
    """True when the training view differs from the eval view (so cached teacher logits do not apply)."""
    return augment != "none"
