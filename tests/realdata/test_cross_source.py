"""cross-source: the plan of training sets, and a matrix with one cell per (training set, test source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkd.data.manifest import read_manifest
from dfkd.experiments.cross_source import plan_training_sets, write_subset_manifest


def test_plan_has_each_source_all_but_one_and_all() -> None:
    plan = plan_training_sets(["c", "a", "b"])
    assert [t.name for t in plan] == ["a", "b", "c", "all_but_a", "all_but_b", "all_but_c", "all"]
    assert plan[3].sources == ("b", "c") and plan[-1].sources == ("a", "b", "c")


def test_with_two_sources_leave_one_out_is_not_repeated() -> None:
    assert [t.name for t in plan_training_sets(["a", "b"])] == ["a", "b", "all"]
    assert [t.name for t in plan_training_sets(["a", "b"], include_all=False)] == ["a", "b"]


def test_one_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least two sources"):
        plan_training_sets(["only"])


def test_subset_manifest_keeps_train_and_val_of_its_sources(two_source_manifest: Path, tmp_path: Path) -> None:
    subset = read_manifest(write_subset_manifest(two_source_manifest, ("alpha",), tmp_path / "alpha.csv"))
    assert subset.sources == ["alpha"]
    assert {s.split for s in subset.samples} == {"train", "val"}
    full = read_manifest(two_source_manifest)
    assert len(subset.samples) == sum(1 for s in full.samples if s.source == "alpha" and s.split != "test")
