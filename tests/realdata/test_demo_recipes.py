"""`dfkd demo --data` runs the real-face recipes: a function-matching student distilled online, not cached logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkd.config import load_config
from dfkd.configs import resolve_config
from dfkd.distill.source import teacher_source
from dfkd.experiments.demo import REAL_FACE_STUDENT_RUNS, REAL_FACE_TEACHER


def test_real_face_demo_distils_by_function_matching_with_the_teacher_online() -> None:
    teacher = load_config(resolve_config(REAL_FACE_TEACHER), ["data.manifest=m.csv"])
    assert teacher.model.name == "mobilenet_v2" and teacher.model.pretrained == "imagenet"
    names = dict(REAL_FACE_STUDENT_RUNS)
    student = load_config(resolve_config(names["student_fm"]), ["data.manifest=m.csv", "teacher.model=t.safetensors"])
    assert student.distill.loss == "kl" and student.distill.alpha == 1.0 and student.distill.temperature == 1.0
    assert student.data.mixup > 0 and student.data.augment == "crop"
    assert teacher_source(student) == "online"  # the teacher scores the very crops and mixes the student sees
    baseline = load_config(resolve_config(names["student_nokd"]), ["data.manifest=m.csv"])
    assert baseline.distill.loss == "none" and baseline.train.epochs == student.train.epochs


def test_the_general_recipes_train_on_self_blended_fakes() -> None:
    for name in ("general_teacher_sbi", "general_student_sbi_fm"):
        config = load_config(resolve_config(name), ["data.manifest=m.csv", "teacher.model=t.safetensors"])
        assert config.data.synthetic_fakes == "sbi" and config.data.augment == "quality"


def test_two_roots_with_one_name_get_their_own_crop_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo --data a/data b/data --faces crop` cropped both into faces/data: the second set was silently lost."""
    import dfkd.data.build
    import dfkd.data.faces
    from dfkd.experiments.demo import run_demo

    cropped: list[tuple[Path, Path]] = []
    scanned: list[list[Path]] = []

    class Scanned(Exception):
        pass

    def fake_crop(root, target, **kwargs):
        cropped.append((Path(root), Path(target)))

    def fake_scan(roots, *args, **kwargs):
        scanned.append([Path(root) for root in roots])
        raise Scanned

    monkeypatch.setattr(dfkd.data.faces, "crop_dataset", fake_crop)
    monkeypatch.setattr(dfkd.data.build, "build_manifest", fake_scan)
    roots = [tmp_path / "x" / "data", tmp_path / "y" / "data"]
    with pytest.raises(Scanned):
        run_demo(tmp_path / "out", data_roots=roots, faces="crop")
    assert [root for root, _ in cropped] == [root.resolve() for root in roots]
    assert [target.name for _, target in cropped] == ["data", "data-2"]
    assert scanned == [[target for _, target in cropped]]
