"""`dfkd sweep` with real (tiny) training: one teacher cache, the ranked table, best.yaml, plots, the report."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.config import load_config
from dfkd.evaluate.report import build_report
from dfkd.experiments.sweep import train_and_validate
from tests.conftest import TINY


def test_sweep_command_end_to_end(easy_manifest: Path, easy_teacher: Path, tmp_path: Path) -> None:
    spec = tmp_path / "kd_sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "base": {
                    "model": {"name": "resnet8_fast"},
                    "distill": {"loss": "kl", "temperature": 2.0},
                    "train": {"epochs": 1},
                },
                "mode": "grid",
                "grid": {"distill.alpha": [0.3, 0.7]},
            }
        )
    )
    out = tmp_path / "sweep"
    settings = [*TINY, f"data.manifest={easy_manifest}", f"teacher.model={easy_teacher}"]
    args = ["sweep", "--config", str(spec), "--out", str(out), *(a for s in settings for a in ("--set", s))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 complete" in result.output

    # One teacher-logit cache, computed before the trials and used by both.
    cache = out / "teacher_logits"
    assert (cache / "train.safetensors").exists() and (cache / "val.safetensors").exists()
    trials = sorted((out / "trials").iterdir())
    assert len(trials) == 2
    for trial in trials:
        assert load_config(trial / "config.yaml").teacher.cache == str(cache.resolve())
        assert not (trial / "teacher_logits").exists()

    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("rank,trial,state,batch_size,lr,scheduler,alpha,temperature,loss")
    assert len(lines) == 3
    table = (out / "sweep.md").read_text()
    assert "| trial | batch | lr | scheduler | α | T | loss | val_auc (objective) | accuracy % | F1 fake % |" in table
    assert "validation split" in table and "test split" in table
    best = load_config(out / "best.yaml")
    assert best.distill.alpha in (0.3, 0.7) and best.teacher.cache == str(cache.resolve())
    assert best.data.manifest == str(easy_manifest)
    assert (out / "history.png").exists() and (out / "eval" / "metrics.json").exists()
    assert (out / "importance.png").exists() or "importance plot skipped" in table

    report = build_report([out], tmp_path / "report").read_text()
    assert f"## Sweep ({out.name})" in report and "| trial | batch | lr |" in report


def test_pruned_trial_stops_after_its_epoch_and_keeps_its_best_model(easy_manifest: Path, tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"data.manifest={easy_manifest}", "model.name=resnet8_fast", "train.epochs=2"])
    seen: list[int] = []

    def prune_at_once(row: dict) -> bool:
        seen.append(int(row["epoch"]))
        return True

    outcome = train_and_validate(config, tmp_path / "trial", prune_at_once)
    assert seen == [1] and outcome.pruned and len(outcome.history) == 1
    assert outcome.model_path is not None and outcome.best_epoch == 1
    assert 0.0 <= outcome.metrics["roc_auc"] <= 1.0 and "log_loss" in outcome.metrics
