"""robustness: severities grow monotonically, noise is seeded, and the table, JSON and plot are written."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from dfkd.experiments.robustness import PERTURBATIONS, SEVERITIES, perturb, run_robustness
from tests.realdata.helpers import astronaut


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_severities_are_monotone_in_the_perturbation_they_apply(name: str) -> None:
    clean = astronaut().resize((256, 256))
    reference = np.asarray(clean, dtype=np.float64)
    distortions = []
    for severity in (0, *SEVERITIES):
        image = perturb(clean, name, severity, rng=np.random.default_rng(0))
        assert image.size == clean.size and image.mode == "RGB"
        distortions.append(np.abs(np.asarray(image, dtype=np.float64) - reference).mean())
    assert distortions[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(distortions)), distortions
    levels = PERTURBATIONS[name].levels
    direction = -1 if name in ("jpeg", "downscale") else 1  # a lower quality or scale is stronger; others grow
    assert all(direction * (b - a) > 0 for a, b in itertools.pairwise(levels))


def test_noise_is_seeded() -> None:
    clean = astronaut().resize((64, 64))
    first = perturb(clean, "noise", 3, rng=np.random.default_rng([0, 3, 7]))
    second = perturb(clean, "noise", 3, rng=np.random.default_rng([0, 3, 7]))
    other = perturb(clean, "noise", 3, rng=np.random.default_rng([0, 3, 8]))
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_unknown_perturbation_or_severity_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(astronaut(), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        perturb(astronaut(), "blur", 6)


def test_robustness_of_two_models_shares_one_table(tiny_model: Path, easy_manifest: Path, tmp_path: Path) -> None:
    summary = run_robustness(
        [tiny_model, tiny_model],
        easy_manifest,
        tmp_path,
        severities=(5,),
        num_workers=0,
    )
    names = [result["name"] for result in summary["results"]]
    assert len(set(names)) == 2
    data = json.loads((tmp_path / "robustness.json").read_text())
    row = data["models"][0]["perturbations"]["noise"]
    assert set(data["models"][0]["perturbations"]) == set(PERTURBATIONS)
    assert row["severity"] == [0, 5] and row["level"] == [None, 25]
    assert row["auc"][0] == data["models"][0]["clean"]["auc"]
    markdown = (tmp_path / "robustness.md").read_text()
    assert f"| {names[0]} | jpeg |" in markdown and f"| {names[1]} | noise |" in markdown  # a model column first
    assert (tmp_path / "robustness.png").stat().st_size > 0
