"""How hard is the synthetic demo dataset? Train a plain ResNet8 from scratch on it and print the curve.

Generates the demo dataset (into a temporary folder unless ``--data`` names one), trains a ResNet8 (Adam lr 1e-3,
batch 32, centre crops of the 256 px images without resizing, no augmentation) and prints validation accuracy
after the first few batches and after each epoch, seconds per epoch, and the cross-validated AUC of a logistic
regression on trivial global cues (mean/std colour, brightness, JPEG size), which should stay near 0.5.

    python benchmarks/demo_learnability.py --epochs 6 --crop 96
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dfkd.data import demo
from dfkd.labels import FAKE, REAL

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet8(nn.Module):
    """The reference student (174,673 parameters), returning fake-logits [B]."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        in_channels = 16
        for channels, stride in ((16, 1), (32, 2), (64, 2)):
            layers += [BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels, 1)]
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3))).squeeze(1)


def build_resnet8() -> tuple[nn.Module, str]:
    """The project's ResNet8 when its registry has one, else the local reference copy; and which it is."""
    try:
        from dfkd.models import create_model

        return create_model("resnet8"), "dfkd.models resnet8"
    except Exception:  # the models package may not exist yet: fall back to the reference definition
        return ResNet8(), "local reference ResNet8"


def load_split(root: Path, split: str, crop: int) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Centre crops (no resize) of every image of one split, normalised: ([N, 3, crop, crop], [N], paths)."""
    paths, labels = [], []
    for label, name in ((REAL, "real"), (FAKE, "fake")):
        found = sorted((root / split / name).glob("*.jpg"))
        paths += found
        labels += [label] * len(found)
    crops = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        top, left = (pixels.shape[0] - crop) // 2, (pixels.shape[1] - crop) // 2
        crops.append(pixels[top : top + crop, left : left + crop])
    images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return (images - IMAGENET_MEAN) / IMAGENET_STD, torch.tensor(labels, dtype=torch.float32), paths


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    fake_logits = torch.cat([model(batch) for batch in images.split(128)])
    model.train()
    return float(((fake_logits > 0).float() == labels).float().mean())


def train(
    root: Path, *, crop: int, epochs: int, seed: int, lr: float = 1e-3, probe_batches: tuple[int, ...] = (5, 10)
) -> list[tuple[str, float, float]]:
    """Rows of (when, validation accuracy, seconds of training since the previous row)."""
    torch.manual_seed(seed)
    train_images, train_labels, _ = load_split(root, "train", crop)
    val_images, val_labels, _ = load_split(root, "valid", crop)
    model, source = build_resnet8()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"{source} ({parameters:,} parameters), crop {crop}, Adam {lr:g}, batch 32, {len(train_labels)} train images")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    rows = [("init", accuracy(model, val_images, val_labels), 0.0)]
    step = 0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        paused = 0.0
        for batch in torch.randperm(len(train_labels), generator=generator).split(32):
            loss = loss_fn(model(train_images[batch]), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if epoch == 1 and step in probe_batches:
                probe_started = time.perf_counter()
                rows.append((f"batch {step}", accuracy(model, val_images, val_labels), float("nan")))
                paused += time.perf_counter() - probe_started
        seconds = time.perf_counter() - started - paused
        rows.append((f"epoch {epoch}", accuracy(model, val_images, val_labels), seconds))
        print(f"  {rows[-1][0]:>9}  val acc {rows[-1][1]:.3f}  {seconds:.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="existing or new output folder (default: a temporary folder)")
    parser.add_argument("--per-class", type=int, default=demo.DEMO_DEFAULT_PER_CLASS)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--crop", type=int, default=96, help="centre crop of the images, no resize")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace-strength", type=float, default=None, help="default: demo.FAKE_TRACE_STRENGTH")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="dfkd_demo_") as temp_dir:
        out = args.data or Path(temp_dir)
        started, cpu_started = time.perf_counter(), time.process_time()
        children_started = resource.getrusage(resource.RUSAGE_CHILDREN)
        root = demo.make_demo_dataset(
            out, per_class=args.per_class, seed=args.seed, size=args.size, trace_strength=args.trace_strength
        )
        generation_s = time.perf_counter() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (
            time.process_time()
            - cpu_started
            + sum(getattr(children, field) - getattr(children_started, field) for field in ("ru_utime", "ru_stime"))
        )
        strength = demo.FAKE_TRACE_STRENGTH if args.trace_strength is None else args.trace_strength
        images = f"{2 * args.per_class} images ({args.size} px, trace {strength})"
        print(f"generated {images} in {generation_s:.1f} s wall, {cpu_s:.1f} s CPU")
        _, labels, paths = load_split(root, "train", 32)
        cue_auc = demo.trivial_cue_auc(paths, labels.int().tolist())
        scores = np.array([demo.checkerboard_score(path) for path in paths])
        fake_scores, real_scores = scores[labels.numpy() == FAKE], scores[labels.numpy() == REAL]
        print(f"trivial-cue logistic regression AUC (train split, 5-fold CV): {cue_auc:.3f}")
        print(f"checkerboard score, median: fake {np.median(fake_scores):.4f}  real {np.median(real_scores):.4f}")

        rows = train(root, crop=args.crop, epochs=args.epochs, seed=args.seed, lr=args.lr)

    print()
    print("| after | val accuracy | train s |")
    print("|---|---|---|")
    for when, acc, seconds in rows:
        print(f"| {when} | {100 * acc:.1f} % | {'' if seconds != seconds else f'{seconds:.1f}'} |")


if __name__ == "__main__":
    main()
