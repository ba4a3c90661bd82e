"""Self-blended fakes (SBI; Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from a real face and itself.

A real face is copied twice; one copy is altered in colour and in frequency content and the source copy is shifted
and scaled a little; the source is blended back into the target through the face region's convex hull, elastically
deformed, blurred twice and scaled by a random blend ratio. A detector trained on such images learns blending
boundaries and statistical mismatches inside a face, not one generator's fingerprint, which is what carries over to
face swaps and splices nobody trained on.

The face region comes from five landmarks (eyes, nose tip, mouth corners) found once per image by ``dfkd crop-faces``
and stored in its ``faces.csv``: a mean-face outline (jaw and brows, as the convex hull of the 68-point layout) is
mapped onto them by a similarity transform. When ``dfkd face-outlines`` has added a measured face outline (the hull
of MediaPipe's face mesh) after the five points, that outline is the face region instead.

A share of the blends may take their pasted region from another real face instead (``donor_share``): the donor is
aligned onto the face's five points by a similarity transform and then altered like a self-blend's source. That is
Face X-ray's blended image (Li et al., CVPR 2020): another person's face or facial parts pasted into a photo, as in
face swaps and hand-made composites, where a self-blend changes no identity and no facial geometry.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dfkd.faces.align import MEAN_FACE_5, landmarks_in_box, similarity_transform

if TYPE_CHECKING:
    from dfkd.data.manifest import Manifest

logger = logging.getLogger(__name__)

# The outline of the 68-point layout's convex hull in MEAN_FACE_5's 112-px frame: jaw from temple to temple, then
# the brows.
_JAW = [(56 + 42 * np.cos(angle), 56 + 60 * np.sin(angle)) for angle in np.linspace(0.0, np.pi, 17)]
_BROWS = [(16 + 80 * t, 40 - 14 * np.sin(np.pi * t)) for t in np.linspace(1.0, 0.0, 9)]
FACE_OUTLINE = np.array(_JAW + _BROWS)
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's; full-strength blends are drawn half the time
LANDMARKS_COLUMN = "landmarks"


def face_hull(landmarks: np.ndarray) -> np.ndarray:
    """The face region's convex hull [K, 2] (image pixels).

    ``landmarks`` is the five points [5, 2], optionally followed by a measured face outline ([5 + K, 2], K ≥ 3):
    the outline's hull when there is one, else the mean face's outline mapped onto the five points.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if len(points) > 5:
        outline = points[5:]
    else:
        matrix = similarity_transform(MEAN_FACE_5, points)
        outline = FACE_OUTLINE @ matrix[:, :2].T + matrix[:, 2]
    return cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2)


def hull_mask(shape: tuple[int, int], hull: np.ndarray) -> np.ndarray:
    """A float32 [H, W] mask, 1 inside the hull polygon."""
    mask = np.zeros(shape, dtype=np.float32)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1.0)
    return mask


def _odd(value: float) -> int:
    return max(3, int(value) // 2 * 2 + 1)


def parts_mask(shape: tuple[int, int], landmarks: np.ndarray, parts: tuple[str, ...]) -> np.ndarray:
    """A float32 [H, W] mask, 1 inside ellipses around the named facial parts (``eyes``, ``nose``, ``mouth``).

    Sized by the inter-ocular distance and turned with the eye line, from the five landmarks: what a hand-made
    composite replaces (the eyes, nose or mouth of another photo), where a whole-face blend has no boundary.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:5]
    left, right, nose, mouth_left, mouth_right = points
    axis = right - left
    eyes = float(np.linalg.norm(axis)) or max(shape) / 4
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    down = np.array([-axis[1], axis[0]]) / eyes  # unit vector from the eyes towards the mouth
    mouth = (mouth_left + mouth_right) / 2
    ellipses = {
        "eyes": [(left, (0.38 * eyes, 0.24 * eyes)), (right, (0.38 * eyes, 0.24 * eyes))],
        "nose": [(nose - 0.25 * eyes * down, (0.28 * eyes, 0.5 * eyes))],
        "mouth": [(mouth, (0.5 * float(np.linalg.norm(mouth_right - mouth_left)) + 0.15 * eyes, 0.28 * eyes))],
    }
    mask = np.zeros(shape, dtype=np.float32)
    for part in parts:
        for centre, (half_width, half_height) in ellipses[part]:
            centre_px = (round(float(centre[0])), round(float(centre[1])))
            axes = (max(1, round(half_width)), max(1, round(half_height)))
            cv2.ellipse(mask, centre_px, axes, angle, 0, 360, 1.0, thickness=-1)
    return mask


FACE_PARTS = ("eyes", "nose", "mouth")


def blend_mask(
    shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator, *, parts_share: float = 0.0
) -> np.ndarray:
    """The blending mask [H, W] in [0, 1]: hull, elastically deformed, blurred twice, times a blend ratio.

    With probability ``parts_share`` the region is one to three facial parts (:func:`parts_mask`) instead of the
    face's hull. Every deformation is bounded by the face's size (its inter-ocular distance), so the mask stays within
    a fixed dilation of the hull: elastic shift ≤ 0.15 × eye distance, each blur kernel ≤ 0.3 × eye distance.
    """
    height, width = shape
    # No draw at parts_share 0, so whole-face blends stay those of a given seed.
    if parts_share > 0 and rng.random() < parts_share:
        chosen = tuple(part for part in FACE_PARTS if rng.random() < 0.5) or (str(rng.choice(FACE_PARTS)),)
        mask = parts_mask(shape, landmarks, chosen)
    else:
        mask = hull_mask(shape, face_hull(landmarks))
    eyes = float(np.linalg.norm(np.asarray(landmarks[1]) - np.asarray(landmarks[0]))) or max(shape) / 4
    amplitude = 0.15 * eyes * rng.uniform(0.3, 1.0)
    smooth = _odd(eyes * 0.5)
    flow = [cv2.GaussianBlur(rng.uniform(-1, 1, shape).astype(np.float32), (smooth, smooth), 0) for _ in range(2)]
    for component in flow:
        component *= amplitude / max(float(np.abs(component).max()), 1e-6)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    mask = cv2.remap(mask, grid_x + flow[0], grid_y + flow[1], cv2.INTER_LINEAR, borderValue=0)
    for _ in range(2):
        kernel = _odd(rng.uniform(0.05, 0.3) * eyes)
        mask = cv2.GaussianBlur(mask, (kernel, kernel), 0)
    peak = float(mask.max())
    if peak > 0:
        mask /= peak
    return (mask * rng.choice(BLEND_RATIOS)).astype(np.float32)


def _alter_colour(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB shift, hue / saturation / value shift and brightness / contrast, each with probability 0.5."""
    image = pixels.astype(np.float32)
    if rng.random() < 0.5:
        image += rng.uniform(-20, 20, size=3).astype(np.float32)
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-10, 10)) % 180
        hsv[..., 1:] += rng.uniform(-20, 20, size=2).astype(np.float32)
        image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if rng.random() < 0.5:
        image = (image - 128) * rng.uniform(0.9, 1.1) + 128 + 255 * rng.uniform(-0.1, 0.1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _alter_frequency(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down-then-up sampling (detail lost) or sharpening (detail added)."""
    height, width = pixels.shape[:2]
    if rng.random() < 0.5:
        factor = rng.uniform(0.3, 0.7)
        small = cv2.resize(pixels, (max(1, round(width * factor)), max(1, round(height * factor))), cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    amount = rng.uniform(0.3, 1.0)
    blurred = cv2.GaussianBlur(pixels, (0, 0), 1.0)
    return cv2.addWeighted(pixels, 1 + amount, blurred, -amount, 0)


def _shift_and_scale(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source moved by up to 3 % of the image and scaled by 0.95-1.05 about the centre (edges replicated)."""
    height, width = pixels.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    shift = rng.uniform(-0.03, 0.03, size=2) * np.array([width, height])
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(pixels, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def align_donor(
    donor: np.ndarray, donor_landmarks: np.ndarray, landmarks: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """``donor`` (uint8 [h, w, 3]) warped so that its five points fall on ``landmarks``: an [H, W, 3] image of
    ``shape`` whose face lies where the target's does (edges reflected)."""
    matrix = similarity_transform(np.asarray(donor_landmarks)[:5], np.asarray(landmarks)[:5])
    return cv2.warpAffine(donor, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(
    pixels: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    *,
    parts_share: float = 0.0,
    donor: tuple[np.ndarray, np.ndarray] | None = None,
    alter_frame: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended fake of one real face: (blended uint8 [H, W, 3], mask float32 [H, W]).

    The source copy is altered (colour, then frequency), shifted and scaled, and blended into the untouched image
    through the mask, so the result differs from the image only where the mask is non-zero. With ``alter_frame``
    (the paper alters either copy, half the time each) the alteration goes to the frame instead: the image itself is
    altered and the shifted, unaltered source blended into it, so the face is the sharper or truer part (dfkd's
    default keeps the frame: frame-altered blends made more false alarms on an unseen collection). ``parts_share``: the
    share of blends confined to facial parts (see :func:`blend_mask`). ``donor``: (pixels, landmarks) of another real
    face to paste from instead of the image itself (:func:`align_donor`). Deterministic for a given ``rng`` state.
    """
    base = pixels if donor is None else align_donor(donor[0], donor[1], landmarks, pixels.shape[:2])
    if alter_frame:
        frame = _alter_frequency(_alter_colour(pixels, rng), rng)
        source = _shift_and_scale(base, rng)
    else:
        frame = pixels
        source = _shift_and_scale(_alter_frequency(_alter_colour(base, rng), rng), rng)
    mask = blend_mask(pixels.shape[:2], landmarks, rng, parts_share=parts_share)
    weight = mask[..., None]
    blended = source.astype(np.float32) * weight + frame.astype(np.float32) * (1.0 - weight)
    blended = np.where(weight > 0, np.clip(np.round(blended), 0, 255), frame.astype(np.float32))
    return blended.astype(np.uint8), mask


def recompress(image: Image.Image, rng: np.random.Generator, low: int = 60, high: int = 100) -> Image.Image:
    """JPEG re-compression at a random quality in [low, high]."""
    from dfkd.data.transforms import jpeg_roundtrip

    return jpeg_roundtrip(image, int(rng.integers(low, high + 1)))


@dataclass(frozen=True)
class LandmarkTable:
    """Landmarks per image path (in that image's pixels), read from crop-faces' ``faces.csv`` files: five points [5, 2],
    followed by the face outline when ``dfkd face-outlines`` measured one."""

    points: Mapping[str, np.ndarray]

    def get(self, path: str, size: tuple[int, int]) -> np.ndarray:
        """The image's landmarks, or the mean face placed over the central 80 % when none were recorded."""
        found = self.points.get(str(Path(path).resolve()))
        if found is not None:
            return found
        width, height = size
        return landmarks_in_box(0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height)


def format_landmarks(points: np.ndarray) -> str:
    """``"x y x y …"`` with one decimal (the ``landmarks`` column of faces.csv)."""
    return " ".join(f"{value:.1f}" for value in np.asarray(points, dtype=np.float64).reshape(-1))


def parse_landmarks(text: str) -> np.ndarray | None:
    """The inverse of :func:`format_landmarks`: five points [5, 2], or five points and an outline of at least three
    [5 + K, 2]; None for an empty or malformed cell."""
    try:
        values = np.array([float(value) for value in text.split()], dtype=np.float64)
    except ValueError:
        return None
    if values.size % 2 or not (values.size == 10 or values.size >= 16) or not np.isfinite(values).all():
        return None
    return values.reshape(-1, 2)


def manifest_landmarks(manifest: Manifest) -> LandmarkTable:
    """The landmarks recorded by crop-faces for the images of a manifest (found through its scanned roots)."""
    from dfkd.data.crop_geometry import crop_sidecar
    from dfkd.data.manifest import read_sidecar

    manifest_path = manifest.path
    folders = []
    for root in read_sidecar(manifest_path).get("roots") or []:
        sidecar = crop_sidecar(Path(root))
        if sidecar is not None and sidecar.parent not in folders:
            folders.append(sidecar.parent)
    table = load_landmarks(folders)
    if not table.points:
        logger.warning(
            "%s: no face landmarks recorded (the images are not dfkd crop-faces output): self-blending assumes a "
            "centred face filling the central 80 %% of each image",
            manifest_path,
        )
        return table
    reals = [s.path for s in manifest.samples if s.label == "real" and s.split in ("train", "val")]
    missing = [path for path in reals if str(Path(path).resolve()) not in table.points]
    if missing:  # some roots are crop-faces output and some not, or crops whose landmarks were not found
        logger.warning(
            "%s: %d of %d real training and validation images have no recorded landmarks (e.g. %s): self-blending "
            "assumes a centred face filling the central 80 %% of those; crop them with `dfkd crop-faces`",
            manifest_path,
            len(missing),
            len(reals),
            missing[0],
        )
    return table


def load_landmarks(crop_folders: list[Path]) -> LandmarkTable:
    """Landmarks of every crop listed in the ``faces.csv`` of each crop-faces output folder, by absolute path."""
    points: dict[str, np.ndarray] = {}
    for folder in crop_folders:
        table = folder / "faces.csv"
        if not table.is_file():
            continue
        with open(table, newline="", encoding="utf-8", errors="surrogateescape") as handle:
            for row in csv.DictReader(handle):
                found = parse_landmarks(row.get(LANDMARKS_COLUMN) or "")
                if row.get("status") == "ok" and found is not None:
                    points[str((folder / row["path"]).resolve())] = found
    return LandmarkTable(points)


class SelfBlendedDataset(Dataset):
    """A manifest split whose real images become self-blended fakes (label 1) with probability ``share``.

    Wraps a :class:`dfkd.data.dataset.ManifestDataset` (same ``(image, label, index)`` items and transform). The
    blend is made at ``blend_size`` (the shorter side the model's resize gives), where it costs about 2 ms per image.
    Training draws afresh every time (from torch's RNG, so a resumed run draws the same); ``fixed_seed`` makes the
    choice and the blend a function of the index (validation: the same pseudo-fakes every epoch). JPEG
    re-compression is applied to reals and fakes alike with probability ``jpeg_p``, so compression tells no class.
    """

    def __init__(
        self,
        base,
        landmarks: LandmarkTable,
        *,
        share: float,
        blend_size: int,
        fixed_seed: int | None = None,
        jpeg_p: float = 0.5,
        parts_share: float = 0.0,
        donor_share: float = 0.0,
        frame_share: float = 0.0,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"the share of reals turned into self-blended fakes must be in (0, 1], got {share}")
        if not 0.0 <= parts_share <= 1.0:
            raise ValueError(f"the share of blends confined to facial parts must be in [0, 1], got {parts_share}")
        if not 0.0 <= donor_share <= 1.0:
            raise ValueError(f"the share of blends pasted from another face must be in [0, 1], got {donor_share}")
        if not 0.0 <= frame_share <= 1.0:
            raise ValueError(f"the share of blends that alter the frame must be in [0, 1], got {frame_share}")
        self.base, self.landmarks, self.share, self.blend_size = base, landmarks, share, blend_size
        self.fixed_seed, self.jpeg_p, self.parts_share, self.donor_share = fixed_seed, jpeg_p, parts_share, donor_share
        self.frame_share = frame_share
        self.samples, self.split, self.on_error = base.samples, base.split, base.on_error
        self.real_indices = [index for index, sample in enumerate(self.samples) if sample.label == "real"]
        labels = base.labels.clone()
        if fixed_seed is not None:  # known in advance: the teacher gate and validation AUC read them
            for index, sample in enumerate(self.samples):
                if sample.label == "real" and self._rng(index).random() < share:
                    labels[index] = 1.0
        self.labels = labels

    def __len__(self) -> int:
        return len(self.base)

    def _rng(self, index: int) -> np.random.Generator:
        if self.fixed_seed is not None:
            return np.random.default_rng([self.fixed_seed, index])
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def __getitem__(self, index: int):
        sample = self.samples[index]
        decoded = self.base.load_decoded(index)
        if decoded is None:
            return None
        image = decoded.image
        rng = self._rng(index)
        label = self.base.labels[index]
        if sample.label == "real" and rng.random() < self.share:
            points = self.landmarks.get(sample.path, decoded.full_size) * decoded.scale  # stored → decoded pixels
            # No draw at donor_share 0, so the self-blends of a given seed stay what they were.
            donor = self._donor(index, rng) if self.donor_share > 0 and rng.random() < self.donor_share else None
            alter_frame = self.frame_share > 0 and rng.random() < self.frame_share  # no draw at 0, as above
            image, label = self.blend(image, points, rng, donor=donor, alter_frame=alter_frame), torch.tensor(1.0)
        if rng.random() < self.jpeg_p:
            image = recompress(image, rng)
        if self.base.transform is not None:
            image = self.base.transform(image)
        return image, label, index

    def _donor(self, index: int, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray] | None:
        """Another real face of the split and its landmarks (its decoded pixels), or None when there is none or it
        cannot be read (the blend then pastes the face itself)."""
        if len(self.real_indices) < 2:
            return None
        # Uniform over the other reals: draw among all but the last, and take the last in place of the face itself.
        chosen = self.real_indices[int(rng.integers(len(self.real_indices) - 1))]
        if chosen == index:
            chosen = self.real_indices[-1]
        decoded = self.base.load_decoded(chosen)
        if decoded is None:
            return None
        return decoded.image, self.landmarks.get(self.samples[chosen].path, decoded.full_size) * decoded.scale

    def _at_blend_size(self, image: Image.Image, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = self.blend_size / min(image.size)
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image, points = (
                image.resize(size, Image.BILINEAR),
                points * np.array([size[0] / image.width, size[1] / image.height]),
            )
        return np.asarray(image.convert("RGB")), points

    def blend(
        self,
        image: Image.Image,
        points: np.ndarray,
        rng: np.random.Generator,
        *,
        donor: tuple[Image.Image, np.ndarray] | None = None,
        alter_frame: bool = False,
    ) -> Image.Image:
        """The self-blended fake of one real image (landmarks as LandmarkTable's, in its pixels) at ``blend_size``;
        with ``donor`` (image, landmarks), pasted from that other face instead; ``alter_frame``: see
        :func:`self_blend`."""
        pixels, points = self._at_blend_size(image, points)
        donor_pixels = None if donor is None else self._at_blend_size(*donor)
        blended, _ = self_blend(
            pixels, points, rng, parts_share=self.parts_share, donor=donor_pixels, alter_frame=alter_frame
        )
        return Image.fromarray(blended)


def preview_grid(
    paths: list[str],
    landmarks: LandmarkTable,
    *,
    size: int = 192,
    seed: int = 0,
    parts_share: float = 0.0,
    donor_share: float = 0.0,
    frame_share: float = 0.0,
) -> tuple[Image.Image, list[str]]:
    """Rows of (real | mask | self-blended fake) for ``paths``, ``size`` px each; returns (grid, unreadable paths).

    What a model trained with ``data.synthetic_fakes=sbi`` is taught: the mask's deformed, blurred edge is the
    blending boundary it learns to find. With ``donor_share``, that share of the rows pastes from the previous
    readable image of ``paths`` (another face) instead of the face itself; with ``frame_share``, that share alters
    the frame instead of the face (:func:`self_blend`'s ``alter_frame``).
    """
    from dfkd.data.images import ImageLoadError, open_image

    rows, unreadable = [], []
    rng = np.random.default_rng(seed)
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for path in paths:
        try:
            image = open_image(path)
        except ImageLoadError:
            unreadable.append(path)
            continue
        points = landmarks.get(path, image.size) * np.array([size / image.width, size / image.height])
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
        use_donor = previous is not None and donor_share > 0 and rng.random() < donor_share
        alter_frame = frame_share > 0 and rng.random() < frame_share
        donor_pixels = previous if use_donor else None
        blended, mask = self_blend(
            pixels, points, rng, parts_share=parts_share, donor=donor_pixels, alter_frame=alter_frame
        )
        previous = (pixels, points)
        mask_rgb = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
        rows.append(np.concatenate([pixels, mask_rgb, blended], axis=1))
    if not rows:
        raise ValueError("none of the images could be read")
    return Image.fromarray(np.concatenate(rows, axis=0)), unreadable
