"""cross-source: the plan of training sets, and a matrix with one cell per (training set, test source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkd.data.manifest import read_manifest
from dfkd.experiments.cross_source import (
    cross_source_markdown,
    plan_training_sets,
    seen_in_training,
    write_subset_manifest,
)


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


def test_all_but_fakes_sets_keep_every_sources_reals_and_drop_one_sources_fakes(
    two_source_manifest: Path, tmp_path: Path
) -> None:
    plan = plan_training_sets(["a", "b"], all_but_fakes=True, include_all=False)
    assert [t.name for t in plan] == ["a", "b", "all_but_a_fakes", "all_but_b_fakes"]
    assert plan[2].sources == ("a", "b") and plan[2].fakes_excluded == ("a",)
    assert plan_training_sets(["a", "b"], reals_sbi=True)[-1].fakes_excluded == ("a", "b")
    path = write_subset_manifest(two_source_manifest, ("alpha", "beta"), tmp_path / "m.csv", fakes_excluded=("alpha",))
    kept = {(s.source, s.label) for s in read_manifest(path).samples}
    assert kept == {("alpha", "real"), ("beta", "real"), ("beta", "fake")}


def test_the_matrix_marks_sources_seen_whole_and_by_their_reals_only() -> None:
    train_sets = [
        {"name": "a", "sources": ["a"], "kind": "only", "fakes_excluded": []},
        {"name": "all_but_a_fakes", "sources": ["a", "b"], "kind": "all_but_fakes", "fakes_excluded": ["a"]},
        {"name": "reals_sbi", "sources": ["a", "b"], "kind": "reals_sbi", "fakes_excluded": ["a", "b"]},
    ]
    assert [seen_in_training(train_sets[1], s) for s in "ab"] == ["reals", "all"]
    assert [seen_in_training(train_sets[0], s) for s in "ab"] == ["all", "none"]
    assert [seen_in_training(train_sets[2], s) for s in "ab"] == ["reals", "reals"]
    cell = {"auc": 0.5, "accuracy": 0.5, "fpr": 0.1, "n": 4}
    result = {
        "model": "m",
        "manifest": "m.csv",
        "test_sources": ["a", "b"],
        "train_sets": train_sets,
        "matrix": {t["name"]: {"a": cell, "b": cell} for t in train_sets},
    }
    auc_table = cross_source_markdown(result).split("**AUC**")[1].split("**accuracy")[0]
    assert "| all_but_a_fakes | 0.500° | 0.500* |" in auc_table and "| a | 0.500* | 0.500 |" in auc_table


def test_a_finished_cell_is_not_reused_for_other_data_or_settings(
    two_source_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cells were reused whenever their done marker existed: a resplit manifest was scored with models trained on its
    test images, under the new manifest's name."""
    import csv
    import types

    import dfkd.experiments.cross_source as cross_source
    from dfkd.config import validate_config

    trained: list[str] = []

    def fake_train(config, run_dir, resume=False, overwrite=False):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "model.safetensors").write_text("weights")
        trained.append(Path(run_dir).name)
        return types.SimpleNamespace(best_epoch=1, best_value=0.9)

    monkeypatch.setattr("dfkd.train.train", fake_train)
    cell = {"auc": 0.5, "accuracy": 0.5, "fpr": 0.0, "n": 1}
    monkeypatch.setattr(cross_source, "score_by_source", lambda *a, **k: {s: cell for s in ("alpha", "beta")})
    config = validate_config({"data": {"manifest": str(two_source_manifest)}, "model": {"name": "resnet8_fast"}})
    out = tmp_path / "out"
    cross_source.run_cross_source(two_source_manifest, config, out, include_all=False)
    cells = len(trained)
    cross_source.run_cross_source(two_source_manifest, config, out, include_all=False)  # the same: reused
    assert len(trained) == cells
    with two_source_manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    moved = next(row for row in rows if row["split"] == "train")
    moved["split"] = "test"  # resplit: a training image now tests
    resplit = tmp_path / "resplit.csv"
    with resplit.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=r"was trained with other training images .*--retrain"):
        cross_source.run_cross_source(resplit, config, out, include_all=False)
    longer = validate_config({**config.model_dump(mode="json"), "train": {"epochs": 50}})
    with pytest.raises(ValueError, match=r"was trained with other train\.epochs"):
        cross_source.run_cross_source(two_source_manifest, longer, out, include_all=False)
    cross_source.run_cross_source(resplit, config, out, include_all=False, retrain=True)
    assert len(trained) == 2 * cells
