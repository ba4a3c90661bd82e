"""Metrics, evaluation, threshold choice, benchmark keys and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.deploy.benchmark import run_benchmark
from dfkd.evaluate import compute_metrics, eer_threshold
from dfkd.evaluate.evaluator import evaluate_model
from dfkd.evaluate.report import build_report
from dfkd.models import read_model_card


def test_metrics_agree_with_scikit_learn_on_fixed_predictions() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1, 0])
    probs = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.6, 0.55, 0.05])
    result = compute_metrics(labels, probs, threshold=0.5)
    predicted = (probs >= 0.5).astype(int)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert result["f1"] == pytest.approx(skm.f1_score(labels, predicted))
    assert result["f1_real"] == pytest.approx(skm.f1_score(1 - labels, 1 - predicted))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs))
    assert result["average_precision"] == pytest.approx(skm.average_precision_score(labels, probs))
    assert result["log_loss"] == pytest.approx(skm.log_loss(labels, probs))
    assert result["confusion_matrix"] == [[4, 1], [1, 4]]
    assert 0 <= result["ece"] <= 1 and result["n"] == 10
    # Hand check of the ECE on a 2-point case: one bin per point, |confidence - accuracy| averaged.
    assert compute_metrics(np.array([1, 0]), np.array([0.9, 0.2]))["ece"] == pytest.approx((0.1 + 0.2) / 2, abs=1e-6)


def test_eer_threshold_balances_the_error_rates() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(500), np.ones(500)].astype(int)
    probs = np.r_[rng.normal(0.3, 0.15, 500), rng.normal(0.7, 0.15, 500)]
    eer, threshold = eer_threshold(labels, probs)
    fpr = ((probs >= threshold) & (labels == 0)).sum() / 500
    fnr = ((probs < threshold) & (labels == 1)).sum() / 500
    assert abs(fpr - fnr) < 0.02 and eer == pytest.approx((fpr + fnr) / 2, abs=0.01)
    assert 0.4 < threshold < 0.6


def test_eer_threshold_sits_mid_gap_not_on_the_saturated_edge() -> None:
    # A confident model: validation fakes saturate at 1.0, reals at most 0.3. The old edge threshold (1.0) called
    # every unseen fake at 0.999 real; any threshold in (0.3, 1.0] makes no validation error, so take the middle.
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 1.0, 1.0, 1.0])
    eer, threshold = eer_threshold(labels, probs)
    assert eer == 0.0 and threshold == pytest.approx(0.65)
    assert compute_metrics(labels, probs, threshold=threshold)["accuracy"] == 1.0
    assert compute_metrics(np.array([1]), np.array([0.999]), threshold=threshold)["accuracy"] == 1.0


def test_single_class_gives_nan_auc_not_a_crash() -> None:
    result = compute_metrics(np.ones(4, dtype=int), np.array([0.9, 0.8, 0.4, 0.7]))
    assert np.isnan(result["roc_auc"]) and result["accuracy"] == 0.75
    # An empty split or a diverged model: a sentence, not scikit-learn's "Found empty input array" or "contains NaN".
    with pytest.raises(ValueError, match="no predictions to score"):
        compute_metrics([], [])
    with pytest.raises(ValueError, match="1 of 2 fake probabilities are not numbers"):
        compute_metrics([0, 1], [0.2, float("nan")])


def test_evaluate_writes_files_and_auto_threshold_uses_validation_only(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(easy_teacher.read_bytes())
    # Scramble the test split's labels on a copy: if test chose the threshold, the choice would change.
    scrambled = tmp_path / "scrambled.csv"
    rows = easy_manifest.read_text().splitlines()
    swapped = [
        r.replace(",real,test,", ",TMP,test,")
        .replace(",fake,test,", ",real,test,")
        .replace(",TMP,test,", ",fake,test,")
        for r in rows
    ]
    scrambled.write_text("\n".join(swapped) + "\n")
    first = evaluate_model(model, easy_manifest, tmp_path / "a", threshold="auto", num_workers=0)
    second = evaluate_model(model, scrambled, tmp_path / "b", threshold="auto", num_workers=0)
    assert first["threshold"] == second["threshold"] == read_model_card(model).threshold
    assert first["threshold_source"] == "validation EER"
    assert first["accuracy"] >= 0.75 and second["accuracy"] == pytest.approx(1 - first["accuracy"])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    for key in (
        "n",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "f1_real",
        "roc_auc",
        "average_precision",
        "eer",
        "log_loss",
        "ece",
        "threshold",
        "confusion_matrix",
        "per_source",
    ):
        assert key in metrics, key
    assert metrics["n"] == 8 and list(metrics["per_source"]) == ["data"]
    header = (tmp_path / "a" / "predictions.csv").read_text().splitlines()[0]
    assert header == "path,source,label,fake_prob"


def test_benchmark_json_has_the_documented_keys(easy_teacher: Path, tmp_path: Path) -> None:
    from tests.conftest import write_image

    for i in range(6):
        write_image(tmp_path / "imgs" / f"{i}.jpg", seed=i, size=48)
    result = run_benchmark(easy_teacher, batch_sizes=(1, 4), images_dir=tmp_path / "imgs", min_seconds=0.05)
    for key in (
        "model",
        "architecture",
        "backend",
        "device",
        "dtype",
        "input_size",
        "params",
        "gflops",
        "settings",
        "model_only",
        "end_to_end",
        "reference_measure",
        "environment",
    ):
        assert key in result, key
    for row in result["model_only"].values():
        assert {"throughput", "latency_ms_p50", "latency_ms_p95", "repeats"} <= set(row)
        assert row["throughput"] > 0 and row["latency_ms_p95"] >= row["latency_ms_p50"]
    assert result["end_to_end"]["images"] == 6 and result["reference_measure"]["batch_size"] == 32
    by_name = run_benchmark("resnet8", batch_sizes=(1,), input_size=32, min_seconds=0.05)
    assert by_name["params"] == 174_673


def test_benchmark_refuses_what_an_onnx_export_cannot_run(easy_teacher: Path, tmp_path: Path) -> None:
    """Another input size ended in an onnxruntime traceback, and --dtype fp16 was reported though fp32 ran."""
    from dfkd.deploy.onnx import export_onnx
    from dfkd.models import read_model_card

    export_onnx(easy_teacher, tmp_path / "m.onnx")
    size = read_model_card(easy_teacher).preprocessing.input_size
    with pytest.raises(ValueError, match=f"exported for {size}-px inputs.*--input-size {size + 8}"):
        run_benchmark(tmp_path / "m.onnx", batch_sizes=(1,), input_size=size + 8, min_seconds=0.05)
    with pytest.raises(ValueError, match="--dtype fp16 applies to the torch backend"):
        run_benchmark(tmp_path / "m.onnx", batch_sizes=(1,), dtype="fp16", min_seconds=0.05)
    assert run_benchmark(tmp_path / "m.onnx", batch_sizes=(1,), input_size=size, min_seconds=0.05)["backend"] == "onnx"


def test_cli_evaluate_and_report_make_parseable_tables(easy_manifest: Path, easy_teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(easy_teacher.read_bytes())
    (run / "config.yaml").write_text("model: {name: resnet8}\ndistill: {loss: none}\n")
    (run / "metrics.csv").write_text(
        "epoch,train_loss,val_loss,val_auc,val_accuracy,lr,seconds\n1,0.5,0.4,0.9,0.8,0.001,1\n"
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "-q",
            "evaluate",
            str(run / "model.safetensors"),
            "--manifest",
            str(easy_manifest),
            "--out",
            str(run / "eval"),
            "--threshold",
            "auto",
            "--num-workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    bench = runner.invoke(
        app,
        [
            "-q",
            "benchmark",
            str(run / "model.safetensors"),
            "--out",
            str(run / "bench.json"),
            "--batch-size",
            "1,2",
            "--seconds",
            "0.05",
        ],
    )
    assert bench.exit_code == 0, bench.output
    report = build_report([run], tmp_path / "report")
    text = report.read_text()
    tables = re.findall(r"((?:^\|.*\|$\n?)+)", text, flags=re.M)
    assert len(tables) >= 4
    for table in tables:
        lines = table.strip().splitlines()
        widths = {len(line.strip("|").split("|")) for line in lines}
        assert len(widths) == 1, table  # every row has the header's number of cells
    first = tables[0].strip().splitlines()
    assert "accuracy %" in first[0] and first[2].startswith("| run |")
    for name in (
        "roc.png",
        "pr.png",
        "confusion.png",
        "training_curves.png",
        "reliability.png",
        "accuracy_vs_cost.png",
    ):
        assert (tmp_path / "report" / name).stat().st_size > 1000, name
    bad = runner.invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "missing.safetensors"),
            "--manifest",
            str(easy_manifest),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "not found" in bad.output
