"""The logit cache is stamped with the teacher's weights, not its file: rewriting the card keeps the cache valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dfkd.data import read_manifest
from dfkd.distill.logit_cache import CacheMismatchError, compute_logit_cache, load_logit_cache, make_stamp, teacher_view
from dfkd.models import create_model, load_model, read_model_card, save_model, update_card
from dfkd.models.weights import weights_digest
from dfkd.utils import sha256_file

GEOMETRY = {"resize_size": 40, "input_size": 32, "num_workers": 0}


def _tiny_teacher(path: Path) -> Path:
    torch.manual_seed(0)
    save_model(create_model("resnet8"), path, {"role": "teacher"})
    return path


def _expected(manifest_path: Path, teacher: Path, *, scaled_decode: bool = True):
    view = teacher_view(read_model_card(teacher).preprocessing.as_dict(), resize_size=40, input_size=32)
    return make_stamp(read_manifest(manifest_path), teacher, view, scaled_decode=scaled_decode)


def test_weights_digest_ignores_the_card_and_sees_every_weight(tmp_path: Path) -> None:
    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    digest, file_hash = weights_digest(teacher), sha256_file(teacher)
    model, card = load_model(teacher)
    update_card(teacher, card.model_copy(update={"threshold": 0.31}))
    assert read_model_card(teacher).threshold == pytest.approx(0.31)
    assert sha256_file(teacher) != file_hash and weights_digest(teacher) == digest
    with torch.no_grad():
        model.fc.bias.add_(1e-3)
    save_model(model, tmp_path / "changed.safetensors", card)
    assert weights_digest(tmp_path / "changed.safetensors") != digest


def test_cache_survives_a_new_threshold_and_refuses_other_weights(easy_manifest: Path, tmp_path: Path) -> None:
    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    cache = compute_logit_cache(teacher, easy_manifest, tmp_path / "cache", **GEOMETRY)
    manifest = read_manifest(easy_manifest)
    model, card = load_model(teacher)
    update_card(teacher, card.model_copy(update={"threshold": 0.2}))  # what `dfkd evaluate --threshold auto` does
    logits = load_logit_cache(cache, manifest, expected=_expected(easy_manifest, teacher))
    assert logits["train"].shape == (len(manifest.split("train")),)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_model(model, teacher, card)
    with pytest.raises(CacheMismatchError, match="teacher weights differ"):
        load_logit_cache(cache, manifest, expected=_expected(easy_manifest, teacher))


def test_a_cache_of_the_old_format_is_refused_then_recomputed(easy_manifest: Path, tmp_path: Path) -> None:
    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    cache = compute_logit_cache(teacher, easy_manifest, tmp_path / "cache", **GEOMETRY)
    stamp_path = cache / "stamp.json"
    stamp = json.loads(stamp_path.read_text())
    old = {**{k: v for k, v in stamp.items() if k != "teacher_weights"}, "teacher_hash": "ab" * 32, "format": 1}
    stamp_path.write_text(json.dumps(old))
    manifest = read_manifest(easy_manifest)
    with pytest.raises(CacheMismatchError, match="cache format differs .*teacher's weights"):
        load_logit_cache(cache, manifest)
    compute_logit_cache(teacher, easy_manifest, cache, **GEOMETRY)
    assert json.loads(stamp_path.read_text())["format"] == 2
    load_logit_cache(cache, manifest, expected=_expected(easy_manifest, teacher))


def test_a_cache_of_full_decodes_is_refused_for_a_scaled_decode_student(easy_manifest: Path, tmp_path: Path) -> None:
    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    cache = compute_logit_cache(teacher, easy_manifest, tmp_path / "cache", scaled_decode=False, **GEOMETRY)
    manifest = read_manifest(easy_manifest)
    load_logit_cache(cache, manifest, expected=_expected(easy_manifest, teacher, scaled_decode=False))
    with pytest.raises(CacheMismatchError, match="transform differs .cache full decode.*now scaled decode"):
        load_logit_cache(cache, manifest, expected=_expected(easy_manifest, teacher))


def test_an_interrupted_cache_resumes_where_it_stopped(
    easy_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partial file records how many images are done, and a resumed run fills in exactly the rest."""
    from safetensors.torch import load_file

    import dfkd.distill.logit_cache as logit_cache

    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    args = {**GEOMETRY, "batch_size": 4, "save_every": 1, "splits": ("train",)}
    full = load_file(str(compute_logit_cache(teacher, easy_manifest, tmp_path / "full", **args) / "train.safetensors"))
    n = len(full["logits"])
    saved: list[tuple[int, torch.Tensor]] = []
    real_save = logit_cache.save_tensors

    def recording_save(tensors: dict, path: Path) -> None:
        if "done" in tensors:
            saved.append((int(tensors["done"]), tensors["logits"].clone()))
        real_save(tensors, path)

    monkeypatch.setattr(logit_cache, "save_tensors", recording_save)
    cache = compute_logit_cache(teacher, easy_manifest, tmp_path / "cut", **args)
    assert [done for done, _ in saved] == [min(4 * step, n) for step in range(1, (n + 3) // 4 + 1)]
    for done, logits in saved:  # everything before `done` is computed, nothing after it
        assert torch.isfinite(logits[:done]).all() and torch.isnan(logits[done:]).all()
    # Interrupted after the second batch: the partial file as that save wrote it, no final file.
    done, logits = saved[1]
    (cache / "train.safetensors").unlink()
    real_save({"logits": logits, "done": torch.tensor(done)}, cache / "train.partial.safetensors")
    compute_logit_cache(teacher, easy_manifest, cache, **args)
    assert torch.allclose(load_file(str(cache / "train.safetensors"))["logits"], full["logits"])
    assert not (cache / "train.partial.safetensors").exists()


def test_a_cache_given_without_its_teacher_is_checked_against_the_students_view(
    easy_manifest: Path, tmp_path: Path
) -> None:
    """Without teacher.model only the manifest was checked: a cache of 40/32-px views taught a 48/40-px student."""
    from dfkd.config import load_config
    from dfkd.distill.distillers import build_distiller

    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    cache = compute_logit_cache(teacher, easy_manifest, tmp_path / "cache", **GEOMETRY)
    manifest = read_manifest(easy_manifest)
    base = [f"data.manifest={easy_manifest}", "distill.loss=kl", f"teacher.cache={cache}", "data.num_workers=0"]
    same = load_config(None, [*base, "data.resize_size=40", "data.input_size=32"])
    build_distiller(same, manifest, {}, tmp_path / "run", "cpu")
    other = load_config(None, [*base, "data.resize_size=48", "data.input_size=40"])
    with pytest.raises(CacheMismatchError, match=r"transform differs .*Resize\(40\).*Resize\(48\).*data\.resize_size"):
        build_distiller(other, manifest, {}, tmp_path / "run", "cpu")
