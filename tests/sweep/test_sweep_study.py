"""The sweep's study: resume repeats nothing, killed trials come back, workers never share a grid point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dfkd.config import ConfigError
from dfkd.experiments.sweep import SweepSpec, parse_sweep_spec, run_sweep
from dfkd.experiments.sweep.run import default_storage
from dfkd.experiments.sweep.spec import grid_points
from dfkd.experiments.sweep.study import all_trials, claim_waiting, create_or_load_study, open_storage, top_up_grid
from tests.sweep.helpers import FakeRunner, check_two_workers_share_a_doubled_queue, read_log


def _spec(tmp_path: Path, grid: dict, **extra: object) -> SweepSpec:
    manifest = tmp_path / "manifest.csv"
    manifest.touch()  # the fake runner reads nothing
    base = {"data": {"manifest": str(manifest)}, "model": {"name": "resnet8_fast"}}
    return parse_sweep_spec({"base": base, "mode": "grid", "grid": grid, "pruner": "none", **extra})


GRID = {"optim.lr": [1e-5, 1e-4], "distill.alpha": [0.4, 0.5, 0.6]}


def _keys(entries: list[dict]) -> list[tuple]:
    return [(e["lr"], e["alpha"]) for e in entries]


def _states(out: Path, spec: SweepSpec) -> dict[str, int]:
    storage = open_storage(default_storage(out))
    study = create_or_load_study(storage, spec, "sweep")
    states: dict[str, int] = {}
    for trial in all_trials(study):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return states


def test_resumed_sweep_repeats_nothing(tmp_path: Path) -> None:
    spec, out, log = _spec(tmp_path, GRID), tmp_path / "sweep", tmp_path / "log.jsonl"
    assert run_sweep(spec, out, runner=FakeRunner(str(log)), n_trials=1).count("complete") == 1
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, runner=FakeRunner(str(log), interrupt_at=3))
    first = _keys(read_log(log))
    assert len(first) == 4 and len(set(first)) == 4
    assert _states(out, spec) == {"COMPLETE": 3, "FAIL": 1, "WAITING": 2}

    summary = run_sweep(spec, out, runner=FakeRunner(str(log)))
    second = _keys(read_log(log))[4:]
    all_points = {(p["optim.lr"], p["distill.alpha"]) for p in grid_points(spec)}
    assert set(first[:3]).isdisjoint(second), "a finished trial ran again"
    assert first[3] in second, "the interrupted trial was not run again"
    assert sorted(second) == sorted(all_points - set(first[:3]))
    assert summary.count("complete") == 6

    third = run_sweep(spec, out, runner=FakeRunner(str(log)))  # nothing left: nothing runs
    assert len(read_log(log)) == 4 + 3 and third.count("complete") == 6
    assert len((out / "sweep.csv").read_text().splitlines()) == 1 + 6
    assert json.loads((out / "sweep.json").read_text())["complete"] == 6
    # Another base (here --set train.epochs=50) is another experiment: its trials must not be the old ones.
    with pytest.raises(ConfigError, match=r"made from a base config with other train\.epochs"):
        run_sweep(spec, out, runner=FakeRunner(str(log)), overrides=["train.epochs=50"])
    run_sweep(spec, out, runner=FakeRunner(str(log)), overrides=["data.num_workers=0"])  # how it runs: same sweep
    assert len(read_log(log)) == 4 + 3


def test_trial_of_a_killed_worker_is_rerun_once_its_heartbeat_stops(tmp_path: Path) -> None:
    spec, out, log = _spec(tmp_path, GRID), tmp_path / "sweep", tmp_path / "log.jsonl"
    out.mkdir()
    storage = open_storage(default_storage(out), heartbeat_interval=1, grace_period=2)
    study = create_or_load_study(storage, spec, "sweep")
    top_up_grid(study, grid_points(spec), "killed-run", 6)
    orphan = claim_waiting(study, "killed-run", "dead-host:1:0", dedupe=True)  # then the process "dies"
    assert orphan is not None
    orphan_params = storage.get_trial(orphan).system_attrs["fixed_params"]

    summary = run_sweep(spec, out, runner=FakeRunner(str(log)), heartbeat_interval=1, grace_period=2, poll_seconds=0.2)
    entries = _keys(read_log(log))
    assert len(entries) == len(set(entries)) == 6
    assert (orphan_params["optim.lr"], orphan_params["distill.alpha"]) in entries
    assert storage.get_trial(orphan).state == TrialState.FAIL
    assert summary.count("complete") == 6


def test_two_workers_on_one_sqlite_study_never_run_the_same_grid_point(tmp_path: Path) -> None:
    grid = {"optim.lr": [1e-5, 1e-4], "distill.alpha": [0.4, 0.5, 0.6], "distill.loss": ["kl", "mse"]}
    spec = _spec(tmp_path, grid)
    check_two_workers_share_a_doubled_queue(spec, tmp_path, default_storage(tmp_path / "sweep"), "sweep")


def test_median_pruner_stops_worse_trials(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path, {"distill.alpha": [0.9, 0.1, 0.2]}, pruner={"name": "median", "startup_trials": 1, "warmup_epochs": 0}
    )
    out, log = tmp_path / "sweep", tmp_path / "log.jsonl"
    summary = run_sweep(spec, out, runner=FakeRunner(str(log), epochs=4))
    states = {row.settings["distill.alpha"]: row.state for row in summary.rows}
    assert states == {0.9: "complete", 0.1: "pruned", 0.2: "pruned"}
    assert summary.best_number == 0
    table = (out / "sweep.md").read_text()
    assert "| pruned |" in table and "best.yaml" in table


def test_tpe_mode_samples_the_declared_space_and_tops_up_to_n_trials(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.touch()
    spec = parse_sweep_spec(
        {
            "base": {"data": {"manifest": str(manifest)}},
            "mode": "tpe",
            "space": {
                "optim.lr": {"low": 1e-5, "high": 1e-3, "log": True},
                "distill.alpha": {"low": 0.1, "high": 0.9},
                "distill.loss": {"choices": ["kl", "mse"]},
            },
            "n_trials": 3,
            "pruner": "none",
        }
    )
    out, log = tmp_path / "sweep", tmp_path / "log.jsonl"
    assert run_sweep(spec, out, runner=FakeRunner(str(log))).count("complete") == 3
    summary = run_sweep(spec, out, runner=FakeRunner(str(log)), n_trials=5)  # two more, the first three kept
    entries = read_log(log)
    assert summary.count("complete") == 5 and len(entries) == 5
    assert all(1e-5 <= e["lr"] <= 1e-3 and 0.1 <= e["alpha"] <= 0.9 and e["loss"] in ("kl", "mse") for e in entries)
    header = (out / "sweep.md").read_text()
    assert "| trial | batch | lr | scheduler | α | T | loss |" in header and (out / "best.yaml").exists()
