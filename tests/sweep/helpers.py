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
