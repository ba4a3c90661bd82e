"""Shared builders for the inference and deploy tests: tiny model files, a face photo and short videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

# The astronaut's face, as YuNet, CenterFace and MTCNN all box it (within a few pixels).
ASTRONAUT_BOX = (179, 60, 269, 177)


def astronaut() -> Image.Image:
    """scikit-image's astronaut photo: one real face, 512x512."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def noise_image(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A random RGB image (no face)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def vary_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm statistics (from torch's random state), so that its logits
    vary between images."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def make_tiny_model(path: Path, seed: int = 0, threshold: float = 0.5, face_crop: dict | None = None) -> Path:
    """A resnet8_fast with random weights, preprocessing resize 72 / input 64, saved as a dfkd model file (with the
    card's ``face_crop`` when given)."""
    from dfkd.models import create_model, save_model
    from dfkd.models.registry import make_preprocessing

    torch.manual_seed(seed)
    model = vary_batchnorm(create_model("resnet8_fast"))
    model.dfkd_preprocessing = make_preprocessing(72, 64)
    card = {"threshold": threshold, "metrics": {"val_auc": 0.5}}
    save_model(model, path, card if face_crop is None else {**card, "face_crop": face_crop})
    return path


def iou(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def write_face_video(path: Path, n_frames: int = 20, fps: float = 10.0, size: int = 256) -> Path:
    """A short MP4 (OpenCV, mp4v) of the astronaut panning slowly: one face in every frame."""
    import cv2

    frame = np.asarray(astronaut().resize((size, size)))[:, :, ::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for index in range(n_frames):
        writer.write(np.ascontiguousarray(np.roll(frame, index, axis=1)))
    writer.release()
    return path


def write_mixed_folder(root: Path) -> Path:
    """Good images (JPEG, PNG, nested), broken ones (truncated, empty, text named .jpg) and an ignored file."""
    root.mkdir(parents=True, exist_ok=True)
    astronaut().resize((160, 160)).save(root / "astronaut.jpg", quality=90)
    noise_image(1).save(root / "noise.png")
    (root / "nested" / "deeper").mkdir(parents=True)
    noise_image(2).save(root / "nested" / "deeper" / "noise2.jpg")
    (root / "truncated.jpg").write_bytes((root / "astronaut.jpg").read_bytes()[:600])
    (root / "empty.png").write_bytes(b"")
    (root / "nested" / "text.jpg").write_text("not an image")
    (root / "README.txt").write_text("ignored")
    return root


def train_tiny_on_manifest(manifest_path: Path, out: Path, steps: int = 15, seed: int = 0) -> Path:
    """A resnet8_fast (resize 40, input 32) fitted for a few Adam steps on a manifest's train split."""
    from dfkd.data.images import open_image
    from dfkd.data.manifest import read_manifest
    from dfkd.data.preprocess import preprocess_batch
    from dfkd.labels import label_id
    from dfkd.models import create_model, save_model
    from dfkd.models.registry import make_preprocessing

    torch.manual_seed(seed)
    preprocessing = make_preprocessing(40, 32)
    rows = read_manifest(manifest_path).split("train")
    inputs = torch.from_numpy(preprocess_batch([open_image(row.path) for row in rows], preprocessing))
    labels = torch.tensor([label_id(row.label) for row in rows], dtype=torch.float32)
    model = create_model("resnet8_fast")
    model.dfkd_preprocessing = preprocessing
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(inputs), labels).backward()
        optimizer.step()
    model.eval()
    save_model(model, out)
    return out


def phone_photo(seed: int = 0, size: tuple[int, int] = (4032, 3024), face_side: int = 900) -> Image.Image:
    """A phone-size photo: a smooth, lightly noisy background with the astronaut's head pasted at a random spot."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp_x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    ramp_y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    colour_a, colour_b = rng.uniform(40, 215, (2, 1, 1, 3)).astype(np.float32)
    pixels = colour_a * ramp_x + colour_b * ramp_y * 0.5 + 30.0
    pixels = np.clip(pixels + rng.normal(0, 4, (height, width, 1)).astype(np.float32), 0, 255).astype(np.uint8)
    photo = Image.fromarray(pixels)
    x0, y0, x1, y1 = ASTRONAUT_BOX
    pad = (x1 - x0) // 2
    head = astronaut().crop((x0 - pad, max(0, y0 - pad), x1 + pad, y1 + pad))
    head = head.resize((face_side, round(face_side * head.height / head.width)), Image.BILINEAR)
    left = int(rng.integers(0, width - head.width))
    top = int(rng.integers(0, height - head.height))
    photo.paste(head, (left, top))
    return photo
