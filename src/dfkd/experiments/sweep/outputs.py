"""What a sweep leaves in its folder: the ranked table (CSV and markdown), ``best.yaml``, Optuna's plots and, for
the record only, the best trial's test-split metrics.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dfkd.config import RunConfig, dump_config
from dfkd.evaluate.report import markdown_table
from dfkd.experiments.sweep.spec import SweepSpec, get_dotted
from dfkd.experiments.sweep.study import ATTR_ERROR, is_duplicate, quiet_optuna, trial_params
from dfkd.experiments.sweep.trial import objective_value
from dfkd.utils import atomic_write, write_json, write_text

logger = logging.getLogger(__name__)

# The reference's sweep columns (batch, lr, scheduler, α, loss) plus T, as (config key, markdown header, CSV name).
FIXED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("data.batch_size", "batch", "batch_size"),
    ("optim.lr", "lr", "lr"),
    ("scheduler.name", "scheduler", "scheduler"),
    ("distill.alpha", "α", "alpha"),
    ("distill.temperature", "T", "temperature"),
    ("distill.loss", "loss", "loss"),
)
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("accuracy", "val_accuracy"),
    ("f1", "val_f1_fake"),
    ("f1_real", "val_f1_real"),
    ("roc_auc", "val_auc"),
    ("log_loss", "val_bce"),
)


@dataclass
class SweepRow:
    """One trial in the table."""

    number: int
    state: str
    settings: dict[str, Any]
    extra: dict[str, Any]
    value: float
    metrics: dict[str, Any]
    epochs: int | None
    run_dir: str | None
    error: str | None = None


@dataclass
class SweepSummary:
    """A finished (or partly finished) sweep."""

    out: Path
    rows: list[SweepRow] = field(default_factory=list)
    best_number: int | None = None
    best_value: float | None = None
    best_yaml: Path | None = None
    test_metrics: dict[str, Any] | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    skipped_plots: dict[str, str] = field(default_factory=dict)

    def count(self, state: str) -> int:
        """Rows in ``state`` (complete, pruned, fail)."""
        return sum(row.state == state for row in self.rows)


def fmt_number(value: Any) -> str:
    """Short text for a table cell: ``1e-5`` rather than ``1e-05``; ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", f"{value:.4g}")


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) or math.isnan(value) else f"{100 * value:.2f}"


def collect_rows(trials: list[FrozenTrial], spec: SweepSpec) -> list[SweepRow]:
    """Complete and pruned trials ranked by the objective (best first), then failed ones; dropped claims and
    interrupted attempts are left out (their points ran, or will run, in another trial)."""
    rows = []
    fixed_keys = {key for key, _, _ in FIXED_COLUMNS}
    for trial in trials:
        failed_with_error = trial.state == TrialState.FAIL and ATTR_ERROR in trial.system_attrs
        if is_duplicate(trial) or not (trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or failed_with_error):
            continue
        config = trial.user_attrs.get("config") or {}
        params = trial_params(trial)
        settings = {key: get_dotted(config, key, params.get(key)) for key, _, _ in FIXED_COLUMNS}
        extra = {key: params[key] for key in spec.params if key not in fixed_keys and key in params}
        result = trial.user_attrs.get("result") or {}
        metrics = result.get("metrics") or {}
        value = trial.value if trial.value is not None else math.nan
        if trial.state == TrialState.PRUNED and metrics:
            value = objective_value(spec.objective, metrics)  # the selected model's value, not the last report
        rows.append(
            SweepRow(
                number=trial.number,
                state=trial.state.name.lower(),
                settings=settings,
                extra=extra,
                value=float(value),
                metrics=metrics,
                epochs=result.get("epochs"),
                run_dir=result.get("run_dir"),
                error=trial.system_attrs.get(ATTR_ERROR),
            )
        )
    return sorted(rows, key=lambda row: rank_key(row, spec))


def rank_key(row: SweepRow, spec: SweepSpec) -> tuple:
    """Complete before pruned before failed; then the objective (best first); ties go to the lower validation BCE
    (to the higher AUC when the objective is the BCE itself), then to the earlier trial."""
    order = {"complete": 0, "pruned": 1, "fail": 2}[row.state]
    sign = -1.0 if spec.resolved_direction == "maximize" else 1.0
    value = sign * row.value if math.isfinite(row.value) else math.inf
    second = row.metrics.get("log_loss") if spec.objective != "val_loss" else -row.metrics.get("roc_auc", math.nan)
    second = second if isinstance(second, (int, float)) and math.isfinite(second) else math.inf
    return order, value, second, row.number


def _setting_cells(row: SweepRow) -> list[str]:
    no_kd = row.settings.get("distill.loss") == "none"
    cells = []
    for key, _, _ in FIXED_COLUMNS:
        value = row.settings.get(key)
        cells.append("–" if no_kd and key in ("distill.alpha", "distill.temperature") else fmt_number(value))
    return cells


def sweep_markdown_table(rows: list[SweepRow], spec: SweepSpec) -> str:
    """The reference's sweep table (batch, lr, scheduler, α, loss, accuracy, F1) on the validation split."""
    extra_keys = [key for key in spec.params if key not in {k for k, _, _ in FIXED_COLUMNS}]
    header = [
        "trial",
        *(h for _, h, _ in FIXED_COLUMNS),
        *extra_keys,
        f"{spec.objective} (objective)",
        "accuracy %",
        "F1 fake %",
        "F1 real %",
        "AUC",
        "epochs",
        "state",
    ]
    table = []
    for row in rows:
        if row.state == "fail":
            continue
        m = row.metrics
        table.append(
            [
                str(row.number),
                *_setting_cells(row),
                *(fmt_number(row.extra.get(k)) for k in extra_keys),
                f"{row.value:.4f}" if math.isfinite(row.value) else "–",
                _pct(m.get("accuracy")),
                _pct(m.get("f1")),
                _pct(m.get("f1_real")),
                f"{m['roc_auc']:.4f}" if isinstance(m.get("roc_auc"), float) else "–",
                fmt_number(row.epochs),
                row.state,
            ]
        )
    return markdown_table(header, table)


def write_csv(path: Path, rows: list[SweepRow], spec: SweepSpec) -> None:
    """``sweep.csv``: one line per trial, ranked; metrics are validation-split values."""
    extra_keys = [key for key in spec.params if key not in {k for k, _, _ in FIXED_COLUMNS}]
    header = [
        "rank",
        "trial",
        "state",
        *(name for _, _, name in FIXED_COLUMNS),
        *extra_keys,
        "objective",
        "value",
        *(name for _, name in METRIC_COLUMNS),
        "epochs",
        "run_dir",
        "error",
    ]
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for rank, row in enumerate(rows, start=1):
            writer.writerow(
                [
                    rank,
                    row.number,
                    row.state,
                    *(row.settings.get(key) for key, _, _ in FIXED_COLUMNS),
                    *(row.extra.get(k) for k in extra_keys),
                    spec.objective,
                    row.value,
                    *(row.metrics.get(key) for key, _ in METRIC_COLUMNS),
                    row.epochs,
                    row.run_dir,
                    row.error or "",
                ]
            )


def write_best_yaml(path: Path, trial: FrozenTrial, spec: SweepSpec, study_name: str) -> None:
    """The best trial's full config, ready for ``dfkd train --config``."""
    config = RunConfig.model_validate(trial.user_attrs["config"])
    params = ", ".join(f"{k}={v}" for k, v in trial_params(trial).items())
    header = (
        f"# Best trial of sweep {study_name!r}: trial {trial.number} ({params}),\n"
        f"# {spec.objective} {trial.value:.4f} on the validation split (the test split chose nothing).\n"
        "# Train it with: dfkd train --config best.yaml --out runs/best\n"
    )
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(header + dump_config(config))


def write_plots(study: optuna.Study, out: Path, spec: SweepSpec) -> tuple[dict[str, Path], dict[str, str]]:
    """``history.png`` and ``importance.png`` (Optuna's matplotlib figures); a skipped plot gets a reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    done, skipped = {}, {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with quiet_optuna():
        if complete:
            ax = plot_optimization_history(study, target_name=spec.objective)
            done["history"] = _save(plt, ax, out / "history.png")
        else:
            skipped["history"] = "no completed trial"
        varied = [k for k in spec.params if len({json.dumps(t.params.get(k)) for t in complete if k in t.params}) > 1]
        if len(complete) < 2:
            skipped["importance"] = f"needs at least 2 completed trials ({len(complete)} so far)"
        elif not varied:
            skipped["importance"] = "no parameter took more than one value among the completed trials"
        else:
            try:
                ax = plot_param_importances(
                    study,
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                    params=varied,
                    target_name=spec.objective,
                )
                done["importance"] = _save(plt, ax, out / "importance.png")
            except (RuntimeError, ValueError) as error:
                skipped["importance"] = str(error)
    for name, reason in skipped.items():
        logger.info("%s plot skipped: %s", name, reason)
    return done, skipped


def _save(plt, ax, path: Path) -> Path:
    from dfkd.evaluate.plots import save_figure

    figure = ax.figure
    figure.set_size_inches(8, 4.5)
    return save_figure(figure, path)


def evaluate_best_on_test(best: FrozenTrial, out: Path) -> dict[str, Any] | None:
    """For the record: the best trial's model on the test split (threshold: EER on validation) in ``out/eval``."""
    from dfkd.evaluate.evaluator import evaluate_model

    model_path, config = (best.user_attrs.get("result") or {}).get("model_path"), best.user_attrs.get("config") or {}
    manifest = get_dotted(config, "data.manifest")
    if not model_path or not Path(model_path).exists() or not manifest:
        logger.info("best trial's model is not on this machine (%s): no test-split record", model_path)
        return None
    previous = out / "eval" / "metrics.json"
    if previous.exists():  # a resumed sweep whose best trial did not change keeps its record
        record = json.loads(previous.read_text())
        if record.get("model") == str(model_path) and record.get("split") == "test":
            return record
    try:
        return evaluate_model(model_path, manifest, out / "eval", split="test", threshold="auto", num_workers=0)
    except (ValueError, FileNotFoundError) as error:
        logger.warning("test-split record of the best trial skipped: %s", error)
        return None


def write_outputs(
    study: optuna.Study,
    trials: list[FrozenTrial],
    spec: SweepSpec,
    out: Path,
    study_name: str,
    *,
    target: int,
    evaluate_test: bool = True,
) -> SweepSummary:
    """Write ``sweep.csv``, ``sweep.md``, ``best.yaml`` (+ ``config.yaml``), plots and ``eval/`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(trials, spec)
    summary = SweepSummary(out=out, rows=rows)
    write_csv(out / "sweep.csv", rows, spec)
    by_number = {t.number: t for t in trials}
    best_row = next((row for row in rows if row.state == "complete"), None)
    best = by_number[best_row.number] if best_row is not None else None
    if best is not None:
        summary.best_number, summary.best_value = best.number, best.value
        summary.best_yaml = out / "best.yaml"
        write_best_yaml(summary.best_yaml, best, spec, study_name)
        write_text(out / "config.yaml", summary.best_yaml.read_text())  # so `dfkd report` labels this folder
        if evaluate_test and spec.test_best:
            summary.test_metrics = evaluate_best_on_test(best, out)
    summary.plots, summary.skipped_plots = write_plots(study, out, spec)
    text = _markdown(summary, spec, study_name, target, best)
    with atomic_write(out / "sweep.md", "w", encoding="utf-8") as handle:
        handle.write(text)
    write_json(
        out / "sweep.json",
        {
            "study": study_name,
            "mode": spec.mode,
            "objective": spec.objective,
            "direction": spec.resolved_direction,
            "target_trials": target,
            "complete": summary.count("complete"),
            "pruned": summary.count("pruned"),
            "failed": summary.count("fail"),
            "best_trial": summary.best_number,
            "best_value": summary.best_value,
            "test_metrics_of_best": {k: v for k, v in (summary.test_metrics or {}).items() if k != "per_source"}
            or None,
        },
    )
    return summary


def _markdown(summary: SweepSummary, spec: SweepSpec, study_name: str, target: int, best: FrozenTrial | None) -> str:
    direction = "higher is better" if spec.resolved_direction == "maximize" else "lower is better"
    lines = [
        f"Sweep `{study_name}` ({spec.mode}, {summary.count('complete')} complete, {summary.count('pruned')} pruned, "
        f"{summary.count('fail')} failed of {target}); ranked by **{spec.objective}** ({direction}) on the "
        '**validation split**, where accuracy and F1 use threshold 0.5 and F1 real is the reference\'s "F1". '
        "The test split chose nothing.",
        "",
        sweep_markdown_table(summary.rows, spec),
    ]
    if best is not None:
        lines += ["", f"Best: trial {best.number} ({spec.objective} {best.value:.4f}); its config is `best.yaml`."]
    if summary.test_metrics:
        m = summary.test_metrics
        lines += [
            "",
            f"For the record only, the best trial on the **test split** (threshold {m['threshold']:.3f} from the "
            f"validation EER; it did not take part in choosing): accuracy {_pct(m['accuracy'])} %, F1 fake "
            f"{_pct(m['f1'])} %, F1 real {_pct(m['f1_real'])} %, AUC {m['roc_auc']:.4f} (n = {m['n']}).",
        ]
    failed = [row for row in summary.rows if row.state == "fail"]
    if failed:
        lines += ["", "Failed trials: " + "; ".join(f"{row.number}: {row.error}" for row in failed)]
    for name, path in summary.plots.items():
        lines += ["", f"![{name}]({path.name})"]
    for name, reason in summary.skipped_plots.items():
        lines += ["", f"({name} plot skipped: {reason})"]
    return "\n".join(lines) + "\n"
