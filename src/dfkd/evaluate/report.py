"""`dfkd report`: the reference's tables filled from finished runs, beside its published numbers, plus figures."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from dfkd.evaluate.plots import write_all_plots
from dfkd.evaluate.runs import RunRecord, read_run
from dfkd.utils import atomic_write

# REFERENCE.md, "Published results (test split)": accuracy %, F1 % (of the REAL class: its labels were swapped), FPS.
REFERENCE_ROWS: tuple[tuple[str, float, float, float, float], ...] = (
    ("EfficientNet-B7 teacher", 96.87, 96.81, 204.13, 65.1),
    ("ResNet8, no KD", 86.70, 87.31, 617.72, 0.17),
    ("ResNet8, KD (preliminary)", 88.63, 88.35, 617.72, 0.17),
    ("ResNet8, KD-KL (tuned)", 93.92, 93.85, 617.72, 0.17),
    ("ResNet8, KD-MSE (tuned)", 94.29, 94.26, 617.72, 0.17),
)
REFERENCE_SWEEP: tuple[tuple[str, str, str, float, float], ...] = (
    ("1e-5", "none", "0.5", 92.36, 92.05),
    ("1e-5", "none", "0.6", 92.32, 91.99),
    ("1e-4", "none", "0.5", 92.74, 92.51),
    ("1e-4", "plateau", "0.4", 93.92, 93.85),
)


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _throughputs(run: RunRecord) -> tuple[str, str, str]:
    if not run.bench:
        return "–", "–", "–"
    model_only = run.bench.get("model_only", {})
    best = max((v["throughput"] for v in model_only.values()), default=None)
    e2e = (run.bench.get("end_to_end") or {}).get("throughput")
    ref = (run.bench.get("reference_measure") or {}).get("throughput")
    return _num(best, 1), _num(e2e, 1), _num(ref, 1)


def results_table(runs: list[RunRecord]) -> str:
    """One row per run: the reference's columns and dfkd's extra ones."""
    header = [
        "run",
        "kind",
        "accuracy %",
        "F1 fake %",
        "F1 real %",
        "AUC",
        "EER",
        "img/s model-only",
        "img/s end-to-end",
        "FPS (reference's measure)",
        "params (M)",
        "GFLOPs",
    ]
    rows = []
    for run in runs:
        m = run.metrics
        model_only, e2e, ref = _throughputs(run)
        params = run.bench.get("params") if run.bench else None
        rows.append(
            [
                run.name,
                run.kind,
                _pct(m.get("accuracy")),
                _pct(m.get("f1")),
                _pct(m.get("f1_real")),
                _num(m.get("roc_auc"), 4),
                _num(m.get("eer"), 4),
                model_only,
                e2e,
                ref,
                _num(params / 1e6 if params else None, 3),
                _num(run.bench.get("gflops") if run.bench else None, 3),
            ]
        )
    return markdown_table(header, rows)


def reference_table() -> str:
    """The reference's published test-split numbers (F1 of the real class; FPS measured on a GPU with its loader)."""
    rows = [
        [name, f"{acc:.2f}", f"{f1:.2f}", f"{fps:.2f}", f"{params:.2f}"]
        for name, acc, f1, fps, params in REFERENCE_ROWS
    ]
    return markdown_table(["model", "accuracy %", "F1 % (real class)", "FPS", "params (M)"], rows)


def distillation_table(runs: list[RunRecord]) -> str:
    """Students side by side with the change against the student trained without KD."""
    students = [r for r in runs if r.kind.startswith("student") and r.metrics]
    baseline = next((r for r in students if r.kind == "student (no KD)"), None)
    rows = []
    for run in students:
        distill = run.config.get("distill", {})
        delta = "–"
        if baseline is not None and run is not baseline:
            delta = f"{100 * (run.metrics['accuracy'] - baseline.metrics['accuracy']):+.2f}"
        rows.append(
            [
                run.name,
                run.kind,
                str(distill.get("alpha", "–")) if distill.get("loss") != "none" else "–",
                str(distill.get("temperature", "–")) if distill.get("loss") != "none" else "–",
                _pct(run.metrics.get("accuracy")),
                _pct(run.metrics.get("f1_real")),
                _num(run.metrics.get("roc_auc"), 4),
                delta,
            ]
        )
    header = ["run", "kind", "α", "T", "accuracy %", "F1 real %", "AUC", "Δ accuracy vs no KD (points)"]
    return markdown_table(header, rows)


def sweep_table(sweep_csv: Path) -> str | None:
    """The sweep's table (written by `dfkd sweep`) when a ``sweep.md`` sits beside its CSV."""
    table = sweep_csv.with_suffix(".md")
    return table.read_text().strip() if table.exists() else None


def build_report(run_dirs: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``report.md`` and its PNG figures for the given runs; returns the report's path."""
    out = Path(out_dir)
    runs = [read_run(path) for path in run_dirs]
    if not runs:
        raise ValueError("no run folders given")
    figures = write_all_plots(runs, out)
    sections = [
        "# dfkd report",
        "",
        "## Results on the test split (this dfkd run)",
        "",
        "F1 fake is the F1 of the fake class (dfkd's positive class); F1 real matches the reference's \"F1\", whose "
        "labels were alphabetical (fake = 0). Thresholds were chosen on the validation split (EER point) unless "
        "stated otherwise. Model-only throughput is the best of the measured batch sizes; end-to-end starts from "
        "JPEG files; the last FPS column repeats the reference's own measure (DataLoader loop, 2 workers, batch 32).",
        "",
        results_table(runs),
        "",
        "## Reference (published, REFERENCE.md)",
        "",
        reference_table(),
        "",
        "## Distillation: students with and without KD, KL against MSE",
        "",
        distillation_table(runs),
    ]
    for run in runs:
        table = sweep_table(run.path / "sweep.csv")
        if table:
            for png in ("history.png", "importance.png"):  # the sweep's figures travel with its table
                if (run.path / png).exists():
                    shutil.copy2(run.path / png, out / f"{run.name}_{png}")
                    table = table.replace(f"({png})", f"({run.name}_{png})")
            sections += ["", f"## Sweep ({run.name})", "", table]
    ref_sweep = [[lr, sched, alpha, f"{acc:.2f}", f"{f1:.2f}"] for lr, sched, alpha, acc, f1 in REFERENCE_SWEEP]
    sections += [
        "",
        "### Reference sweep (published, batch 32)",
        "",
        markdown_table(["lr", "scheduler", "α", "accuracy %", "F1 %"], ref_sweep),
        "",
        "## Per source",
        "",
    ]
    per_source_rows = [
        [run.name, source, str(m["n"]), _pct(m["accuracy"]), _num(m["roc_auc"], 4)]
        for run in runs
        for source, m in sorted((run.metrics.get("per_source") or {}).items())
    ]
    sections += [markdown_table(["run", "source", "n", "accuracy %", "AUC"], per_source_rows), "", "## Figures", ""]
    sections += [f"![{name}]({path.name})" for name, path in figures.items()]
    robustness = [run.path / "robustness" / "robustness.md" for run in runs]
    for path in robustness:
        if path.exists():
            sections += ["", f"## Robustness ({path.parent.parent.name})", "", path.read_text().strip()]
    report = out / "report.md"
    with atomic_write(report, "w", encoding="utf-8") as handle:
        handle.write("\n".join(sections) + "\n")
    return report
