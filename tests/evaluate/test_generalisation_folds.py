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
