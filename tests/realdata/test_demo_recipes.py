"""`dfkd demo --data` runs the real-face recipes: a function-matching student distilled online, not cached logits."""

from __future__ import annotations

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
