"""Sweeps against a real PostgreSQL server (a throw-away cluster; skipped with the reason where none can start):
worker processes share one study, no grid point runs twice, and a killed worker's trial is run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dfkd.experiments.sweep import SweepSpec, parse_sweep_spec, run_sweep
from dfkd.experiments.sweep.study import all_trials, create_or_load_study, open_storage
from tests.sweep.helpers import FakeRunner, check_two_workers_share_a_doubled_queue, read_log
from tests.sweep.postgres import throwaway_cluster, why_not_available

REPO = Path(__file__).resolve().parents[2]
GRID = {"optim.lr": [1e-5, 1e-4], "distill.alpha": [0.4, 0.5, 0.6]}


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    reason = why_not_available()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_cluster() as url:
        yield url


def _spec_data(tmp_path: Path, grid: dict) -> dict:
    manifest = tmp_path / "manifest.csv"
    manifest.touch()  # the fake runner reads nothing
    base = {"data": {"manifest": str(manifest)}, "model": {"name": "resnet8_fast"}}
    return {"base": base, "mode": "grid", "grid": grid, "pruner": "none"}


def _spec(tmp_path: Path, grid: dict) -> SweepSpec:
    return parse_sweep_spec(_spec_data(tmp_path, grid))


def test_two_worker_processes_on_one_postgres_study_never_run_a_point_twice(postgres_url: str, tmp_path: Path) -> None:
    spec = _spec(tmp_path, {**GRID, "distill.loss": ["kl", "mse"]})
    check_two_workers_share_a_doubled_queue(spec, tmp_path, postgres_url, "shared")


def test_a_killed_workers_trial_is_queued_again(postgres_url: str, tmp_path: Path) -> None:
    spec_file, out, log = tmp_path / "spec.json", tmp_path / "sweep", tmp_path / "log.jsonl"
    spec_file.write_text(json.dumps(_spec_data(tmp_path, GRID)))
    script = textwrap.dedent(
        f"""
        import json
        from dfkd.experiments.sweep import parse_sweep_spec, run_sweep
        from tests.sweep.helpers import FakeRunner
        spec = parse_sweep_spec(json.loads(open({str(spec_file)!r}).read()))
        run_sweep(spec, {str(tmp_path / "doomed")!r}, storage={postgres_url!r}, study_name="killed",
                  runner=FakeRunner({str(log)!r}, sleep=600), heartbeat_interval=1, grace_period=3)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    doomed = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 120
        while not read_log(log) and doomed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(read_log(log)) == 1, "the doomed worker never started a trial"
    finally:
        doomed.send_signal(signal.SIGKILL)  # no chance to mark its trial failed: only the heartbeat stops
        doomed.wait(timeout=30)
    killed = read_log(log)[0]

    spec = parse_sweep_spec(json.loads(spec_file.read_text()))
    summary = run_sweep(
        spec,
        out,
        storage=postgres_url,
        study_name="killed",
        runner=FakeRunner(str(log)),
        heartbeat_interval=1,
        grace_period=3,
        poll_seconds=0.2,
    )
    rerun = [(e["lr"], e["alpha"]) for e in read_log(log)[1:]]
    assert (killed["lr"], killed["alpha"]) in rerun, "the killed worker's trial was not run again"
    assert len(rerun) == len(set(rerun)) == 6
    assert summary.count("complete") == 6
    study = create_or_load_study(open_storage(postgres_url), spec, "killed")
    states = [t.state for t in all_trials(study)]
    assert states.count(TrialState.COMPLETE) == 6 and states.count(TrialState.FAIL) == 1
