"""Reading finished run folders: config, training history, evaluation and benchmark results."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

EVAL_DIR = "eval"
BENCH_FILE = "bench.json"


@dataclass
class RunRecord:
    """What the report needs from one run folder (fields are empty when a file is absent)."""

    name: str
    path: Path
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    bench: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    fake_probs: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """``teacher``, ``student (no KD)``, ``student (KD-KL)`` or ``student (KD-MSE)``."""
        from dfkd.models import list_models

        model_name = self.config.get("model", {}).get("name", "")
        loss = self.config.get("distill", {}).get("loss", "none")
        if model_name.startswith("timm/") or model_name in list_models(role="teacher"):
            return "teacher"
        return "student (no KD)" if loss == "none" else f"student (KD-{loss.upper()})"


def read_run(path: str | Path) -> RunRecord:
    """Collect a run folder's files; raises FileNotFoundError when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} not found")
    record = RunRecord(name=path.name, path=path)
    if (path / "config.yaml").exists():
        record.config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    if (path / "metrics.csv").exists():
        with open(path / "metrics.csv", encoding="utf-8") as handle:
            record.history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    if (path / EVAL_DIR / "metrics.json").exists():
        record.metrics = json.loads((path / EVAL_DIR / "metrics.json").read_text())
    if (path / BENCH_FILE).exists():
        record.bench = json.loads((path / BENCH_FILE).read_text())
    predictions = path / EVAL_DIR / "predictions.csv"
    if predictions.exists():
        with open(predictions, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        record.labels = np.array([1 if r["label"] == "fake" else 0 for r in rows], dtype=int)
        record.fake_probs = np.array([float(r["fake_prob"]) for r in rows])
    return record
