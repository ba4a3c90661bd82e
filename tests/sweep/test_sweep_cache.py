"""The sweep shares one teacher-logit cache exactly where the trainer's own rule would use a cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkd.experiments.sweep import parse_sweep_spec, resolve_base
from dfkd.experiments.sweep.run import share_teacher_cache
from tests.conftest import TINY


@pytest.mark.parametrize("online", [(), ("data.mixup=0.4",), ("distill.feature_loss=attention",)])
def test_the_sweep_shares_a_cache_only_where_the_trainer_uses_one(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path, online: tuple[str, ...]
) -> None:
    spec = parse_sweep_spec({"base": {"distill": {"loss": "kl"}}, "mode": "grid", "grid": {"distill.alpha": [0.3]}})
    overrides = [*TINY, f"data.manifest={easy_manifest}", f"teacher.model={easy_teacher}", *online]
    base = resolve_base(spec, overrides)
    shared = share_teacher_cache(spec, base, tmp_path)
    cache = tmp_path / "teacher_logits"
    if online:  # the teacher runs online in every trial: a cache would be computed for nothing
        assert shared == base and not cache.exists()
    else:
        assert shared["teacher"]["cache"] == str(cache.resolve()) and (cache / "val.safetensors").exists()
