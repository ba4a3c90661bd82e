"""Synthetic demo dataset in the "140k Real and Fake Faces" layout, with a generator fingerprint as the only cue.

Both classes draw face-like scenes (background, shoulders, hair, head, eyes, brows, nose, mouth, ears, sometimes
glasses) and nuisance values (softness, noise level, JPEG quality) from ONE recipe; the class decides only how
the scene becomes pixels:

- real ("camera"): rendered at 2x the output size, Lanczos anti-aliased down, lens blur, signal-dependent
  Poisson-Gaussian sensor noise, JPEG.
- fake ("generator"): rendered at half the output size, upsampled 2x by a transposed convolution whose even and
  odd kernel phases sum to ``1 + s`` and ``1 - s`` (``s = FAKE_TRACE_STRENGTH``): alternate rows and columns
  differ in gain, the checkerboard of learned up-convolutions, which copies the spectrum to the Nyquist
  frequencies. Then the same noise model as the camera (the generator imitates it), JPEG.

The blur and noise are matched so that with ``s = 0`` a CNN cannot tell the classes apart (it stays at chance),
and ``s`` sets the difficulty. Mean colour, contrast, brightness and JPEG size carry no useful cue (see
:func:`trivial_cue_auc`); :func:`checkerboard_score` measures the fingerprint. Each image has its own RNG derived
from ``(seed, split, label, index)``: files are byte-identical for a seed, whatever the number of workers.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from dfkd.labels import FAKE, REAL
from dfkd.utils import track

logger = logging.getLogger(__name__)

DEMO_DEFAULT_PER_CLASS = 600
DEMO_SPLITS: tuple[tuple[str, int], ...] = (("train", 7), ("valid", 2), ("test", 1))
# Gain deviation of the fake upsampler's phases: 0 leaves no periodic trace (a CNN then stays at chance); 0.008
# lets a ResNet8 reach about 85 % validation accuracy after one epoch and 97-99 % after two to six (crop 96).
FAKE_TRACE_STRENGTH = 0.008
JPEG_QUALITY_RANGE = (75, 95)
# Content softness (Gaussian sigma in output pixels) shared by both classes: it hides the band above a quarter
# of the sampling rate, which fakes rendered at half size lack, so the periodic trace is what is left to learn.
SOFTNESS_RANGE = (0.6, 1.3)
# Extra camera blur standing in for the wider pixel footprint of the fakes' half-size render.
_CAMERA_EXTRA_BLUR = 0.65
# Separable 3-tap filter correlating neighbouring noise samples, scaled to keep the noise variance.
_NOISE_TAPS = np.array([0.12, 0.76], dtype=np.float32) / math.sqrt(2 * 0.12**2 + 0.76**2)
_SPLIT_IDS = {name: idx for idx, (name, _) in enumerate(DEMO_SPLITS)}
_LABEL_DIRS = {REAL: "real", FAKE: "fake"}


def split_counts(per_class: int) -> dict[str, int]:
    """Images per class in each split, 7:2:1 by largest-remainder rounding (they sum to ``per_class``)."""
    total_weight = sum(weight for _, weight in DEMO_SPLITS)
    quotas = [per_class * weight / total_weight for _, weight in DEMO_SPLITS]
    counts = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda idx: (counts[idx] - quotas[idx], idx))
    for idx in by_remainder[: per_class - sum(counts)]:
        counts[idx] += 1
    return {name: count for (name, _), count in zip(DEMO_SPLITS, counts, strict=True)}


# --------------------------------------------------------------------------------------------- scene content


@dataclass
class _Ellipse:
    """A filled ellipse in image coordinates ([0, 1] on both axes, y down), optionally shaded, striped, clipped."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    color: tuple[float, float, float]
    shade: tuple[float, float] = (0.0, 0.0)  # brightness slope along x, y per unit of max(rx, ry)
    stripes: tuple[float, float, float, float] | None = None  # cycles per image, direction, amplitude, phase
    clip: tuple[float, float, float] | None = None  # keep points with nx * x + ny * y < offset
    hole: float = 0.0  # inner radius ratio: > 0 draws a ring (glasses)


@dataclass
class _Scene:
    background: dict[str, np.ndarray | float | int]
    shapes: list[_Ellipse] = field(default_factory=list)


def _hsv(hue: float, sat: float, val: float) -> tuple[float, float, float]:
    red, green, blue = (abs((hue * 6 + offset) % 6 - 3) - 1 for offset in (0.0, 4.0, 2.0))
    return tuple(float(val * (1 - sat + sat * min(max(channel, 0.0), 1.0))) for channel in (red, green, blue))


def _sample_scene(rng: np.random.Generator) -> _Scene:
    """Draw one face-like scene; the same recipe (and number of draws) for both classes."""
    uniform = rng.uniform
    background = {
        "kind": int(rng.integers(4)),
        "colors": np.array([_hsv(uniform(), uniform(0, 0.6), uniform(0.15, 0.95)) for _ in range(2)]),
        "direction": uniform(0, 2 * np.pi),
        "center": uniform(0, 1, size=2),
        "waves": np.column_stack([uniform(2, 24, 6), uniform(0, 2 * np.pi, 6), uniform(0, 2 * np.pi, 6)]),
        "wave_amp": uniform(0.02, 0.12),
        "blobs": np.column_stack([uniform(0, 1, (6, 2)), uniform(0.05, 0.3, 6), uniform(-0.25, 0.25, 6)]),
    }
    scene = _Scene(background)
    add = scene.shapes.append

    scale = uniform(0.17, 0.27)  # head semi-width
    cx, cy = 0.5 + uniform(-0.1, 0.1), 0.47 + uniform(-0.08, 0.08)
    roll, yaw = uniform(-0.3, 0.3), uniform(-0.35, 0.35)
    cos_r, sin_r = math.cos(roll), math.sin(roll)

    def at(u: float, v: float) -> tuple[float, float]:
        """Face frame (units of head semi-width, v down) to image coordinates."""
        return cx + scale * (u * cos_r - v * sin_r), cy + scale * (u * sin_r + v * cos_r)

    skin = _hsv(uniform(0.02, 0.1), uniform(0.2, 0.6), uniform(0.3, 0.95))
    hair = _hsv(uniform(0.0, 0.12), uniform(0.1, 0.7), uniform(0.05, 0.8))
    light = (uniform(-0.5, 0.5), uniform(-0.4, 0.2))
    strands = (uniform(8, 24), roll + np.pi / 2 + uniform(-0.3, 0.3), uniform(0.03, 0.12), uniform(0, 2 * np.pi))
    cloth = _hsv(uniform(), uniform(0, 0.8), uniform(0.1, 0.9))
    cloth_stripes = (uniform(4, 20), uniform(0, np.pi), uniform(0, 0.2), uniform(0, 2 * np.pi))
    add(_Ellipse(*at(0, 3.3), scale * uniform(2.0, 3.0), scale * 1.8, roll, cloth, light, cloth_stripes))
    neck = tuple(channel * 0.8 for channel in skin)
    add(_Ellipse(*at(0, 1.4), scale * 0.45, scale * 0.9, roll, neck, light))
    long_hair = uniform() < 0.5
    add(
        _Ellipse(
            *at(0, 0.3 if long_hair else -0.15),
            scale * 1.2,
            scale * (1.7 if long_hair else 1.3),
            roll,
            hair,
            light,
            strands,
        )
    )
    for side in (-1, 1):
        add(_Ellipse(*at(side * (1.0 - 0.15 * side * yaw), 0.05), scale * 0.17, scale * 0.28, roll, skin, light))
    add(_Ellipse(cx, cy, scale, scale * uniform(1.2, 1.4), roll, skin, light))
    down = (-sin_r, cos_r)  # the fringe keeps the part of its ellipse above a line across the forehead
    edge = at(0, -uniform(0.35, 0.7))
    add(
        _Ellipse(
            *at(0, -0.25),
            scale * 1.08,
            scale * 1.2,
            roll,
            hair,
            light,
            strands,
            (down[0], down[1], down[0] * edge[0] + down[1] * edge[1]),
        )
    )

    eye_white = _hsv(0.1, uniform(0, 0.15), uniform(0.75, 0.95))
    iris = _hsv(uniform(0.0, 0.65), uniform(0.3, 0.8), uniform(0.15, 0.6))
    eye_y, eye_dx, eye_open = uniform(-0.15, 0.05), uniform(0.35, 0.45), uniform(0.45, 0.75)
    look = uniform(-0.06, 0.06)
    for side in (-1, 1):
        eye_u = side * eye_dx + 0.3 * yaw
        eye_w = scale * 0.2 * (1 - 0.4 * side * yaw)
        add(_Ellipse(*at(eye_u, eye_y), eye_w, eye_w * eye_open, roll, eye_white))
        iris_r = eye_w * min(0.5, eye_open)
        add(_Ellipse(*at(eye_u + look, eye_y), iris_r, iris_r, roll, iris))
        add(_Ellipse(*at(eye_u + look, eye_y), iris_r * 0.45, iris_r * 0.45, roll, (0.03, 0.03, 0.04)))
        brow_tilt = side * uniform(-0.25, 0.25)
        add(_Ellipse(*at(eye_u, eye_y - uniform(0.2, 0.3)), eye_w * 1.3, scale * 0.04, roll + brow_tilt, hair))
    nose = tuple(channel * 0.78 for channel in skin)
    add(_Ellipse(*at(0.3 * yaw, 0.3), scale * 0.1, scale * 0.08, roll, nose))
    lips = _hsv(uniform(0.95, 1.03) % 1.0, uniform(0.3, 0.7), uniform(0.35, 0.8))
    mouth_open = uniform(0.12, 0.3)
    add(_Ellipse(*at(0.25 * yaw, 0.65), scale * uniform(0.25, 0.4), scale * mouth_open * 0.5, roll, lips, light))
    if uniform() < 0.3:
        frame = _hsv(uniform(), uniform(0, 0.5), uniform(0.05, 0.5))
        for side in (-1, 1):
            add(_Ellipse(*at(side * eye_dx + 0.3 * yaw, eye_y), scale * 0.3, scale * 0.25, roll, frame, hole=0.82))
    return scene


def _render_background(background: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    colors = np.asarray(background["colors"], dtype=np.float32)
    kind = background["kind"]
    if kind == 0:  # linear gradient
        direction = background["direction"]
        ramp = 0.5 + (x - 0.5) * math.cos(direction) + (y - 0.5) * math.sin(direction)
    elif kind == 1:  # radial gradient
        ramp = 1.4 * np.sqrt((x - background["center"][0]) ** 2 + (y - background["center"][1]) ** 2)
    else:
        ramp = np.full((y.shape[0], x.shape[1]), 0.5, dtype=np.float32)
    canvas = colors[0] + (colors[1] - colors[0]) * np.clip(ramp, 0.0, 1.0)[..., None]
    if kind == 2:  # textured: a sum of plane waves (at most 24 cycles per image), separable in x and y
        texture = sum(
            np.sin(2 * np.pi * freq * math.cos(angle) * x) * np.cos(2 * np.pi * freq * math.sin(angle) * y + phase)
            + np.cos(2 * np.pi * freq * math.cos(angle) * x) * np.sin(2 * np.pi * freq * math.sin(angle) * y + phase)
            for freq, angle, phase in background["waves"]
        )
        canvas *= (1 + background["wave_amp"] / 2.5 * texture)[..., None]
    if kind == 3:  # soft blobs (bokeh), separable Gaussians
        blobs = sum(
            amp * np.exp(-((x - bx) ** 2) / (2 * radius**2)) * np.exp(-((y - by) ** 2) / (2 * radius**2))
            for bx, by, radius, amp in background["blobs"]
        )
        canvas += blobs[..., None]
    return canvas.astype(np.float32)


def _draw_ellipse(canvas: np.ndarray, shape: _Ellipse, res: int) -> None:
    """Composite one anti-aliased ellipse (signed-distance edge one pixel wide) into ``canvas`` in place."""
    cos_a, sin_a = math.cos(shape.angle), math.sin(shape.angle)
    half_w = math.hypot(shape.rx * cos_a, shape.ry * sin_a) + 2 / res
    half_h = math.hypot(shape.rx * sin_a, shape.ry * cos_a) + 2 / res
    x0, x1 = max(math.floor((shape.cx - half_w) * res), 0), min(math.ceil((shape.cx + half_w) * res), res)
    y0, y1 = max(math.floor((shape.cy - half_h) * res), 0), min(math.ceil((shape.cy + half_h) * res), res)
    if x0 >= x1 or y0 >= y1:
        return
    x = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / res)[None, :]
    y = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / res)[:, None]
    dx, dy = x - shape.cx, y - shape.cy
    u, v = (dx * cos_a + dy * sin_a) / shape.rx, (-dx * sin_a + dy * cos_a) / shape.ry
    radius = np.sqrt(u * u + v * v) + 1e-9
    # Signed distance to the boundary in pixels, to first order: (radius - 1) / |grad radius| * res.
    boundary = radius / np.sqrt((u / shape.rx) ** 2 + (v / shape.ry) ** 2 + 1e-18)
    alpha = np.clip(0.5 - (radius - 1) * boundary * res, 0.0, 1.0)
    if shape.hole > 0:
        alpha *= np.clip(0.5 + (radius - shape.hole) * boundary * res, 0.0, 1.0)
    if shape.clip is not None:
        normal_x, normal_y, offset = shape.clip
        alpha *= np.clip(0.5 - (normal_x * x + normal_y * y - offset) * res, 0.0, 1.0)
    gain = 1 + (shape.shade[0] * dx + shape.shade[1] * dy) / max(shape.rx, shape.ry)
    if shape.stripes is not None:
        freq, direction, amp, phase = shape.stripes
        gain = gain + amp * np.sin(2 * np.pi * freq * (x * math.cos(direction) + y * math.sin(direction)) + phase)
    color = np.asarray(shape.color, dtype=np.float32) * gain[..., None]
    region = canvas[y0:y1, x0:x1]
    region += (color - region) * alpha[..., None]


def render_scene(scene: _Scene, res: int) -> np.ndarray:
    """Rasterise a scene at ``res`` x ``res``: float32 [res, res, 3] linear values (not clipped)."""
    coords = (np.arange(res, dtype=np.float32) + 0.5) / res
    canvas = _render_background(scene.background, coords[None, :], coords[:, None])
    canvas = np.broadcast_to(canvas, (res, res, 3)).copy()
    for shape in scene.shapes:
        _draw_ellipse(canvas, shape, res)
    return canvas


# ------------------------------------------------------------------------------------------------ pipelines


@dataclass(frozen=True)
class _Nuisance:
    """Values drawn from the shared recipe, so both classes share their distribution."""

    jpeg_quality: int
    softness: float  # Gaussian sigma of the content, in output pixels
    noise_gain: float  # Poisson part: variance per unit of signal
    noise_floor: float  # Gaussian part: variance


def _sample_nuisance(rng: np.random.Generator) -> _Nuisance:
    return _Nuisance(
        jpeg_quality=int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1)),
        softness=float(rng.uniform(*SOFTNESS_RANGE)),
        noise_gain=float(rng.uniform(0.0003, 0.0016)),
        noise_floor=float(rng.uniform(0.000005, 0.00008)),
    )


def _lanczos_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased resize of float [H, W, C] to [size, size, C] with Lanczos (channels separately, no rounding)."""
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., idx], dtype=np.float32)).resize(
                (size, size), Image.Resampling.LANCZOS
            )
        )
        for idx in range(image.shape[2])
    ]
    return np.stack(channels, axis=-1)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="nearest", truncate=3.0)


def _add_noise(clean: np.ndarray, nuisance: _Nuisance, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise per pixel of ``clean`` [N, N, 3], slightly correlated (as by demosaicing)."""
    variance = nuisance.noise_gain * np.clip(clean, 0.0, 1.0) + nuisance.noise_floor
    noise = np.sqrt(variance) * rng.standard_normal(clean.shape, dtype=np.float32)
    for axis in (0, 1):
        noise = np.swapaxes(noise, 0, axis)
        filtered = _NOISE_TAPS[1] * noise
        filtered[1:] += _NOISE_TAPS[0] * noise[:-1]
        filtered[:-1] += _NOISE_TAPS[0] * noise[1:]
        filtered[[0, -1]] += _NOISE_TAPS[0] * noise[[0, -1]]  # the border repeats its edge sample
        noise = np.swapaxes(filtered, 0, axis)
    return clean + noise


def _camera_pipeline(scene: _Scene, nuisance: _Nuisance, size: int, rng: np.random.Generator) -> np.ndarray:
    sharp = render_scene(scene, 2 * size)
    # Lens blur commutes with the (linear) downscale, so it runs at the output size, where it is 4x cheaper.
    optics = math.hypot(nuisance.softness, _CAMERA_EXTRA_BLUR)
    return _add_noise(_blur(_lanczos_resize(sharp, size), optics), nuisance, rng)


def _lanczos_taps() -> np.ndarray:
    """Weights of the in-between output pixels of a 2x Lanczos-3 interpolator (at offsets 0.5, 1.5, 2.5)."""
    offsets = np.array([0.5, 1.5, 2.5])
    taps = np.sinc(offsets) * np.sinc(offsets / 3)
    return (taps / (2 * taps.sum())).astype(np.float32)


def transposed_conv_upsample(low: np.ndarray, strength: float) -> np.ndarray:
    """Upsample [h, w, C] to [2h, 2w, C] like a stride-2 transposed convolution with uneven phase sums.

    The kernel is a Lanczos-3 interpolator (11 taps) whose even-phase taps are scaled by ``1 + strength`` and
    odd-phase taps by ``1 - strength``: output rows and columns alternate in gain, the checkerboard of a learned
    up-convolution, which puts the image's spectrum at the Nyquist frequencies. ``strength = 0`` leaves no
    periodic trace. Image borders repeat the edge sample.
    """
    taps = _lanczos_taps()
    out = low
    for axis in (0, 1):
        count = out.shape[axis]
        padded = np.take(out, np.clip(np.arange(-2, count + 3), 0, count - 1), axis=axis)
        between = sum(
            weight
            * (
                np.take(padded, np.arange(2 - k, 2 - k + count), axis=axis)
                + np.take(padded, np.arange(3 + k, 3 + k + count), axis=axis)
            )
            for k, weight in enumerate(taps)
        )
        interleaved = np.stack([(1 + strength) * out, (1 - strength) * between], axis=axis + 1)
        out = interleaved.reshape(*out.shape[:axis], 2 * count, *out.shape[axis + 1 :])
    return out


def _generator_pipeline(
    scene: _Scene, nuisance: _Nuisance, size: int, rng: np.random.Generator, strength: float
) -> np.ndarray:
    low = render_scene(scene, (size + 1) // 2)
    # Softness belongs to the content, before the last up-convolution; blurring the interpolated image and then
    # applying the phase gains is the same thing for band-limited content.
    smooth = _blur(transposed_conv_upsample(low, 0.0)[:size, :size], nuisance.softness)
    gains = np.where(np.arange(size) % 2 == 0, 1 + strength, 1 - strength).astype(np.float32)
    image = smooth * gains[:, None, None] * gains[None, :, None]
    # Per-pixel noise injection: the generator imitates the camera's noise (same model, level and spectrum).
    return _add_noise(image, nuisance, rng)


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=2, optimize=False)
    return buffer.getvalue()


def render_demo_jpeg(
    seed: int, split: str, label: int, index: int, *, size: int = 256, trace_strength: float | None = None
) -> bytes:
    """Encode one demo image (JPEG bytes); a pure function of its arguments."""
    strength = FAKE_TRACE_STRENGTH if trace_strength is None else trace_strength
    key = (_SPLIT_IDS[split], int(label), int(index))
    content_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, 0)))
    pixel_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, 1)))
    scene = _sample_scene(content_rng)
    nuisance = _sample_nuisance(content_rng)
    if label == FAKE:
        image = _generator_pipeline(scene, nuisance, size, pixel_rng, strength)
    else:
        image = _camera_pipeline(scene, nuisance, size, pixel_rng)
    return _encode_jpeg(image, nuisance.jpeg_quality)


# ---------------------------------------------------------------------------------------------- the dataset


def _write_image(task: tuple[str, int, str, int, int, int, float]) -> int:
    path, seed, split, label, index, size, strength = task
    data = render_demo_jpeg(seed, split, label, index, size=size, trace_strength=strength)
    temp_path = f"{path}.tmp{os.getpid()}"
    with open(temp_path, "wb") as handle:
        handle.write(data)
    os.replace(temp_path, path)
    return len(data)


def make_demo_dataset(
    out: str | Path,
    *,
    per_class: int = DEMO_DEFAULT_PER_CLASS,
    seed: int = 0,
    size: int = 256,
    workers: int | None = None,
    trace_strength: float | None = None,
) -> Path:
    """Write the synthetic dataset to ``out/real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg``.

    Args:
        out: Output folder (created; existing files with the same names are overwritten).
        per_class: Images per class over all splits, divided 7:2:1.
        seed: Non-negative seed; the same arguments give byte-identical files.
        size: Side of the square images in pixels.
        workers: Processes to use; ``None`` uses every CPU, ``0`` or ``1`` runs in this process.
        trace_strength: Checkerboard gain of the fake upsampler; ``None`` uses :data:`FAKE_TRACE_STRENGTH`.

    Returns:
        The dataset root ``out/real_vs_fake/real-vs-fake``.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 10:
        raise ValueError(f"per_class must be an integer >= 10, got {per_class!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be None or an integer >= 0, got {workers!r}")
    strength = FAKE_TRACE_STRENGTH if trace_strength is None else float(trace_strength)
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"trace_strength must be in [0, 1), got {trace_strength!r}")

    root = Path(out) / "real_vs_fake" / "real-vs-fake"
    tasks = []
    for split, count in split_counts(per_class).items():
        for label, name in _LABEL_DIRS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            tasks.extend(
                (str(folder / f"{name}_{index:06d}.jpg"), seed, split, label, index, size, strength)
                for index in range(count)
            )
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = min(available, len(tasks)) if workers is None else workers
    logger.info("writing %d demo images (%dx%d) to %s with %d process(es)", len(tasks), size, size, root, processes)
    if processes <= 1:
        for task in track(tasks, total=len(tasks), description="demo images"):
            _write_image(task)
    else:
        # fork where it is safe (Linux; the workers never touch torch), as DataLoader workers do: no re-import
        # per worker, and no need for the caller's main module to be importable, which spawn requires.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        with ProcessPoolExecutor(processes, mp_context=get_context(method)) as pool:
            written = pool.map(_write_image, tasks, chunksize=max(1, len(tasks) // (8 * processes)))
            for _ in track(written, total=len(tasks), description="demo images"):
                pass
    return root


# ------------------------------------------------------------------------------------------- sanity checks


def _gray(image: Image.Image | np.ndarray | str | Path) -> np.ndarray:
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    pixels = np.asarray(image, dtype=np.float64)
    return pixels @ np.array([0.299, 0.587, 0.114]) if pixels.ndim == 3 else pixels


def checkerboard_score(image: Image.Image | np.ndarray | str | Path) -> float:
    """Relative amplitude of the period-2 pattern a stride-2 upsampler leaves (about ``strength`` for a fake).

    The mean of ``gray * (-1)^x`` (and of ``(-1)^y``) divided by the mean of ``gray``: the FFT at the Nyquist
    frequencies ``(N/2, 0)`` and ``(0, N/2)``, where the checkerboard moves the image's DC term.
    """
    gray = _gray(image)
    sign_x = np.where(np.arange(gray.shape[1]) % 2 == 0, 1.0, -1.0)[None, :]
    sign_y = np.where(np.arange(gray.shape[0]) % 2 == 0, 1.0, -1.0)[:, None]
    mean = max(float(gray.mean()), 1e-6)
    return float((abs((gray * sign_x).mean()) + abs((gray * sign_y).mean())) / (2 * mean))


def trivial_cue_features(path: str | Path) -> np.ndarray:
    """Per-image global statistics a detector must NOT be able to rely on: mean and std of R, G, B, mean
    brightness, JPEG file size. [8]"""
    with Image.open(path) as opened:
        pixels = np.asarray(opened.convert("RGB"), dtype=np.float64)
    flat = pixels.reshape(-1, 3)
    brightness = float((flat @ np.array([0.299, 0.587, 0.114])).mean())
    return np.array([*flat.mean(axis=0), *flat.std(axis=0), brightness, os.path.getsize(path)])


def trivial_cue_auc(paths: list[str | Path], labels: list[int], *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression on :func:`trivial_cue_features` (0.5 = no cue)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.stack([trivial_cue_features(path) for path in paths])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fake_probs = cross_val_predict(model, features, labels, cv=splitter, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, fake_probs))
