"""The generalisation benchmark's folds: which images of a held-out source are trained on, and which are tested."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from dfkd.data.manifest import read_manifest, write_manifest
from dfkd.data.scan import Sample

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "generalisation.py"


@pytest.fixture(scope="module")
def generalisation():
    spec = importlib.util.spec_from_file_location("generalisation_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    rows = [
        Sample(f"{source}/{label}/{split}{i}.jpg", label, split, source, 1000)
        for source in ("gan", "splice")
        for label in ("real", "fake")
        for split, count in (("train", 7), ("val", 2), ("test", 1))
        for i in range(count)
    ]
    path = tmp_path / "all.csv"
    write_manifest(path, rows, {"roots": []})
    return path


def _splits(path: Path) -> Counter:
    return Counter((s.source, s.label, s.split) for s in read_manifest(path).samples)


def test_a_held_out_source_is_all_test(generalisation, manifest: Path, tmp_path: Path) -> None:
    splits = _splits(generalisation.held_out_manifest(manifest, "splice", tmp_path / "whole"))
    assert splits[("splice", "real", "test")] == 10 and splits[("splice", "fake", "test")] == 10
    assert not any(split != "test" for source, _, split in splits if source == "splice")
    assert splits[("gan", "fake", "train")] == 7  # the other source keeps its splits


def test_holding_out_fakes_only_trains_on_the_sources_training_reals(
    generalisation, manifest: Path, tmp_path: Path
) -> None:
    fold = generalisation.held_out_manifest(manifest, "splice", tmp_path / "fakes", fakes_only=True)
    splits = _splits(fold)
    assert splits[("splice", "real", "train")] == 7
    assert splits[("splice", "real", "test")] == 3  # its validation reals are tested, never used to select
    assert splits[("splice", "fake", "test")] == 10 and splits[("splice", "real", "val")] == 0
    reals_only = _splits(
        generalisation.held_out_manifest(manifest, "splice", tmp_path / "ro", reals_only=True, fakes_only=True)
    )
    assert reals_only[("splice", "real", "train")] == 7 and reals_only[("splice", "fake", "test")] == 10
    assert reals_only[("gan", "fake", "train")] == 0 and reals_only[("gan", "fake", "test")] == 1


def test_the_card_quotes_the_recipes_own_whole_and_fakes_only_rows(generalisation) -> None:
    def row(held_out: str, auc: float) -> dict:
        return {"held_out": held_out, "threshold": 0.7, "sources": {held_out: {"auc": auc, "fpr": 0.05}}}

    runs = {
        "teacher, no swaps": row("swaps", 0.80),
        "student, no swaps": row("swaps", 0.70),
        "student, no swaps fakes": row("swaps", 0.88),
        "teacher, no splice fakes": row("splice", 0.55),
        "student [train.seed=1], no splice fakes": row("splice", 0.99),  # another recipe's student: not quoted
    }
    labels = {"teacher": "teacher", "student": "student"}
    whole = generalisation.unseen_figures(runs, labels)
    assert whole == {
        "swaps": {
            "auc": 0.70,  # the student's figure wins over its teacher's
            "fpr_on_reals": 0.05,
            "threshold": 0.7,
            "measured_with": "the recipe's student, trained without this source",
        }
    }
    fakes = generalisation.unseen_figures(runs, labels, fakes_only=True)
    assert {source: cell["auc"] for source, cell in fakes.items()} == {"swaps": 0.88, "splice": 0.55}
    assert fakes["splice"]["measured_with"] == "the recipe's teacher, trained without this source's fakes"
    assert "5 % when its genuine photos" in generalisation.known_reals_fpr(fakes["swaps"])
    assert generalisation.known_reals_fpr(None) == ""


def test_untrained_fakes_are_only_tested_and_a_fold_made_otherwise_is_refused(
    generalisation, manifest: Path, tmp_path: Path
) -> None:
    fold = generalisation.held_out_manifest(manifest, "splice", tmp_path / "f", untrained_fakes=("gan",))
    splits = _splits(fold)
    assert splits[("gan", "fake", "train")] == 0 and splits[("gan", "fake", "val")] == 0
    assert splits[("gan", "fake", "test")] == 1 and splits[("gan", "real", "train")] == 7
    assert splits[("splice", "fake", "test")] == 10  # the held-out source as before
    with pytest.raises(SystemExit, match="made with --untrained-fakes"):
        generalisation.held_out_manifest(manifest, "splice", tmp_path / "f")
    generalisation.held_out_manifest(manifest, "splice", tmp_path / "plain")
    with pytest.raises(SystemExit, match="made with --untrained-fakes none"):
        generalisation.held_out_manifest(manifest, "splice", tmp_path / "plain", untrained_fakes=("gan",))
