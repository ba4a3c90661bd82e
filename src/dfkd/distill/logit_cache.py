"""Teacher logits computed once per dataset and reused by every student run.

A cache folder holds one ``<split>.safetensors`` per split (tensor ``logits`` ``[N]`` in manifest row order) and
``stamp.json``: the manifest's content hash, the digest of the teacher's weights
(:func:`dfkd.models.weights.weights_digest`: tensors only, so storing a calibrated threshold in the teacher file keeps
its caches valid) and the transform.
Loading checks the stamp and refuses, naming what differs, when the data, the teacher's weights or the preprocessing
changed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from dfkd.data.dataset import ManifestDataset, build_loader, scaled_decode_side
from dfkd.data.manifest import Manifest, read_manifest
from dfkd.data.scan import SPLITS
from dfkd.data.transforms import build_eval_transform
from dfkd.models.weights import weights_digest
from dfkd.utils import save_tensors, track, write_json

logger = logging.getLogger(__name__)
# 1: stamped with the teacher file's SHA-256; 2: with the digest of its weights (a rewritten card keeps the cache).
CACHE_FORMAT = 2


class CacheMismatchError(ValueError):
    """The cache was made for other data, another teacher or another transform."""


@dataclass(frozen=True)
class CacheStamp:
    """What a cache was computed from."""

    manifest_hash: str
    teacher_weights: str
    resize_size: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    format: int = CACHE_FORMAT
    scaled_decode: bool = False  # JPEGs decoded DCT-scaled to resize_size (data.scaled_decode); older stamps: full

    def transform_text(self) -> str:
        """A readable description of the transform."""
        decode = "scaled decode" if self.scaled_decode else "full decode"
        return (
            f"{decode} → Resize({self.resize_size}) → CenterCrop({self.input_size}) → "
            f"Normalize(mean={list(self.mean)}, std={list(self.std)})"
        )

    def differences(self, other: CacheStamp) -> list[str]:
        """Readable lines for each part of ``other`` that differs from this stamp."""
        lines = []
        if self.manifest_hash != other.manifest_hash:
            lines.append(
                f"manifest differs (cache {self.manifest_hash[:12]}, now {other.manifest_hash[:12]}): "
                "the dataset changed"
            )
        if self.teacher_weights != other.teacher_weights:
            lines.append(
                f"teacher weights differ (cache {self.teacher_weights[:12]}, now {other.teacher_weights[:12]}): "
                "another or a retrained teacher"
            )
        if self.transform_text() != other.transform_text():
            lines.append(f"transform differs (cache {self.transform_text()}, now {other.transform_text()})")
        if self.format != other.format:
            lines.append(f"cache format differs (cache {self.format}, now {other.format})")
        return lines


def teacher_view(teacher_preprocessing: dict, *, resize_size: int | None = None, input_size: int | None = None) -> dict:
    """The teacher's view of an image: the student's geometry (resize, crop) with the teacher's own normalisation."""
    return {
        "resize_size": int(resize_size or teacher_preprocessing["resize_size"]),
        "input_size": int(input_size or teacher_preprocessing["input_size"]),
        "mean": tuple(float(v) for v in teacher_preprocessing["mean"]),
        "std": tuple(float(v) for v in teacher_preprocessing["std"]),
    }


def make_stamp(
    manifest: Manifest, teacher_path: str | os.PathLike[str], view: dict, *, scaled_decode: bool
) -> CacheStamp:
    """The stamp a cache of ``teacher_path`` on ``manifest`` with ``view`` (and that decode) must carry."""
    return CacheStamp(
        manifest_hash=manifest.content_hash,
        teacher_weights=weights_digest(teacher_path),
        scaled_decode=scaled_decode,
        **view,
    )


def _read_stamp(cache_dir: Path) -> CacheStamp:
    path = cache_dir / "stamp.json"
    if not path.exists():
        raise CacheMismatchError(f"{cache_dir} is not a dfkd logit cache (no stamp.json)")
    data = json.loads(path.read_text())
    if data.get("format") != CACHE_FORMAT:
        raise CacheMismatchError(
            f"logit cache {cache_dir} does not match: cache format differs (cache {data.get('format')}, now "
            f"{CACHE_FORMAT}: the stamp now holds the digest of the teacher's weights, not the file's hash); "
            "run `dfkd cache-logits` again"
        )
    data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
    return CacheStamp(**data)


@torch.inference_mode()
def compute_logit_cache(
    teacher_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    resize_size: int | None = None,
    input_size: int | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    splits: tuple[str, ...] = SPLITS,
    save_every: int = 20,
    scaled_decode: bool = True,
) -> Path:
    """Run the teacher once over every split and save its logits; resumes a partly written cache.

    Geometry defaults to the teacher file's own preprocessing; pass the student's ``resize_size``/``input_size``
    so that teacher and student see the same crop, and its ``data.scaled_decode`` (the default, like the config's)
    so that they see the same pixels.
    """
    from dfkd.models import load_model
    from dfkd.models.fast import channels_last_input, frozen_inference_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(manifest_path)
    teacher, card = load_model(teacher_path, device=device)
    teacher = frozen_inference_model(teacher)  # BatchNorm folded, channels-last: the same logits, faster
    view = teacher_view(card.preprocessing.as_dict(), resize_size=resize_size, input_size=input_size)
    stamp = make_stamp(manifest, teacher_path, view, scaled_decode=scaled_decode)
    stamp_path = out / "stamp.json"
    if stamp_path.exists():
        try:
            stale = "; ".join(_read_stamp(out).differences(stamp))
        except CacheMismatchError as error:  # an older cache format
            stale = str(error)
        if stale:
            logger.info("cache in %s is stale (%s); recomputing", out, stale)
            for split in SPLITS:
                for suffix in (".safetensors", ".partial.safetensors"):
                    (out / f"{split}{suffix}").unlink(missing_ok=True)
    write_json(stamp_path, asdict(stamp))
    transform = build_eval_transform(view["resize_size"], view["input_size"], view["mean"], view["std"])
    for split in splits:
        final = out / f"{split}.safetensors"
        if final.exists():
            logger.info("teacher logits for %s already cached", split)
            continue
        dataset = ManifestDataset(
            manifest, split, transform, decode_side=scaled_decode_side(view["resize_size"], scaled_decode)
        )
        if len(dataset) == 0:
            save_tensors({"logits": torch.zeros(0)}, final)
            continue
        partial = out / f"{split}.partial.safetensors"
        logits = torch.full((len(dataset),), float("nan"))
        done = 0
        if partial.exists():
            saved = load_file(str(partial))
            done = int(saved["done"].item())
            logits[:done] = saved["logits"][:done]
            logger.info("resuming %s from image %d", split, done)
        subset = torch.utils.data.Subset(dataset, range(done, len(dataset)))
        loader = build_loader(subset, batch_size=batch_size, num_workers=num_workers)
        total = (len(subset) + batch_size - 1) // batch_size
        for step, batch in enumerate(track(loader, total=total, description=f"teacher logits ({split})"), start=1):
            if batch is not None:  # None: every file of the batch was unreadable (each logged); their logits stay NaN
                images, _, positions = batch  # positions index the whole split, not the resumed subset
                logits[positions] = teacher(channels_last_input(images.to(device))).float().cpu()
            if step % save_every == 0:
                high = done + min(step * batch_size, len(subset))  # the loader keeps order: every earlier image is done
                save_tensors({"logits": logits.clone(), "done": torch.tensor(high)}, partial)
        save_tensors({"logits": logits}, final)
        partial.unlink(missing_ok=True)
    return out


def load_logit_cache(
    cache_dir: str | os.PathLike[str],
    manifest: Manifest,
    *,
    expected: CacheStamp | None = None,
    geometry: tuple[int, int, bool] | None = None,
    splits: tuple[str, ...] = ("train", "val"),
) -> dict[str, torch.Tensor]:
    """Load cached logits per split after checking the stamp against the manifest (and ``expected`` when given).

    ``geometry`` (resize size, input size, scaled decode) is what can still be checked without the teacher file: the
    view the student will see must be the one the teacher scored.

    Raises:
        CacheMismatchError: naming what differs (manifest, teacher weights, transform, cache format) or what is
            missing.
    """
    cache = Path(cache_dir)
    stamp = _read_stamp(cache)
    if stamp.manifest_hash != manifest.content_hash:
        raise CacheMismatchError(
            f"logit cache {cache} does not match: manifest differs (cache {stamp.manifest_hash[:12]}, "
            f"now {manifest.content_hash[:12]}): the dataset changed; run `dfkd cache-logits` again"
        )
    if expected is not None and stamp != expected:
        raise CacheMismatchError(f"logit cache {cache} does not match: " + "; ".join(stamp.differences(expected)))
    if geometry is not None and (stamp.resize_size, stamp.input_size, stamp.scaled_decode) != geometry:
        resize_size, input_size, scaled_decode = geometry
        now = replace(stamp, resize_size=resize_size, input_size=input_size, scaled_decode=scaled_decode)
        raise CacheMismatchError(
            f"logit cache {cache} does not match: "
            + "; ".join(stamp.differences(now))
            + ": set data.resize_size, data.input_size and data.scaled_decode as the cache was made, or cache again"
        )
    result = {}
    for split in splits:
        path = cache / f"{split}.safetensors"
        if not path.exists():
            raise CacheMismatchError(f"logit cache {cache} has no logits for split {split!r} (incomplete cache)")
        logits = load_file(str(path))["logits"]
        if logits.numel() != len(manifest.split(split)):
            raise CacheMismatchError(
                f"logit cache {cache}: {split} has {logits.numel()} logits for {len(manifest.split(split))} images"
            )
        result[split] = logits
    return result
