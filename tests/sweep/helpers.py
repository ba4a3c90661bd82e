"""Fast fake trial runners for the sweep tests (picklable, so spawned workers can use them)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dfkd.config import RunConfig
from dfkd.experiments.sweep.trial import OnEpoch, TrialOutcome


def fake_score(config: RunConfig) -> float:
    """A deterministic 'validation AUC' from the swept settings."""
    return round(0.5 + 0.4 * config.distill.alpha - 10 * config.optim.lr, 6)


def read_log(path: str | Path) -> list[dict]:
    """The runner's log: one JSON object per trial started."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class FakeRunner:
    """Logs each call (pid and swept settings) as one line, optionally waits for company, sleeps or is interrupted."""

    log: str
    interrupt_at: int | None = None  # raise KeyboardInterrupt on this call of this process (1-based)
    sleep: float = 0.0
    barrier: str | None = None  # folder: the first call waits (≤ 30 s) until `company` processes have started one
    company: int = 2
    epochs: int = 1
    calls: int = 0

    def __call__(self, config: RunConfig, run_dir: Path, on_epoch: OnEpoch) -> TrialOutcome:
        self.calls += 1
        entry = {
            "pid": os.getpid(),
            "lr": config.optim.lr,
            "alpha": config.distill.alpha,
            "loss": config.distill.loss,
            "scheduler": config.scheduler.name,
            "run_dir": str(run_dir),
        }
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        if self.barrier is not None and self.calls == 1:
            Path(self.barrier).mkdir(parents=True, exist_ok=True)
            (Path(self.barrier) / str(os.getpid())).touch()
            deadline = time.monotonic() + 30
            while len(list(Path(self.barrier).iterdir())) < self.company and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt("simulated kill")
        time.sleep(self.sleep)
        score = fake_score(config)
        history, pruned = [], False
        for epoch in range(1, self.epochs + 1):
            row = {"epoch": epoch, "val_auc": score * epoch / self.epochs, "val_loss": 1 - score, "val_accuracy": score}
            history.append(row)
            if on_epoch(row) and epoch < self.epochs:
                pruned = True
                break
        metrics = {
            "roc_auc": score,
            "accuracy": score - 0.01,
            "f1": score - 0.02,
            "f1_real": score - 0.03,
            "log_loss": 1 - score,
        }
        return TrialOutcome(metrics=metrics, history=history, best_epoch=len(history), pruned=pruned)


def check_two_workers_share_a_doubled_queue(spec, tmp_path: Path, storage_url: str, study_name: str) -> None:
    """Two machines topped the queue up at the same moment (every grid point waits twice); two worker processes
    then run the sweep on ``storage_url``: each point must run exactly once, and both workers must train."""
    from optuna.trial import TrialState

    from dfkd.experiments.sweep import run_sweep
    from dfkd.experiments.sweep.spec import grid_points, point_key
    from dfkd.experiments.sweep.study import all_trials, create_or_load_study, open_storage

    out, log = tmp_path / "sweep", tmp_path / "log.jsonl"
    out.mkdir(exist_ok=True)
    study = create_or_load_study(open_storage(storage_url), spec, study_name)
    for params in grid_points(spec) * 2:
        study.enqueue_trial(params)
    runner = FakeRunner(str(log), sleep=0.05, barrier=str(tmp_path / "barrier"))
    summary = run_sweep(
        spec, out, storage=storage_url, study_name=study_name, runner=runner, workers=2, poll_seconds=0.2
    )
    entries = read_log(log)
    n_points = len(grid_points(spec))
    keys = [(e["lr"], e["alpha"], e["loss"]) for e in entries]
    assert len(keys) == len(set(keys)) == n_points, "a grid point ran twice (or not at all)"
    assert len({e["pid"] for e in entries}) == 2, "both workers should have trained"
    assert summary.count("complete") == n_points
    complete = [t for t in all_trials(study) if t.state == TrialState.COMPLETE]
    assert len({point_key(t.params) for t in complete}) == n_points
