"""Sweep files: the grid is exactly the declared combinations, and bad keys or values fail before training."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dfkd.config import ConfigError
from dfkd.experiments.sweep import grid_points, load_sweep_spec, parse_sweep_spec, resolve_base, run_sweep, validate_all
from dfkd.experiments.sweep.spec import point_key
from tests.sweep.helpers import FakeRunner, read_log

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "dfkd" / "configs"


def test_seed_grid_enumerates_exactly_the_reference_combinations() -> None:
    spec = load_sweep_spec(CONFIGS / "seed_sweep.yaml")
    points = grid_points(spec)
    declared = {
        "data.batch_size": [32],
        "optim.lr": [1e-5, 1e-4],
        "scheduler.name": ["none", "plateau"],
        "distill.alpha": [0.4, 0.5, 0.6],
        "distill.loss": ["kl", "mse"],
        "distill.temperature": [4.0],
    }
    expected = [dict(zip(declared, values, strict=True)) for values in itertools.product(*declared.values())]
    assert len(points) == 24 == len({point_key(p) for p in points})
    assert sorted(map(point_key, points)) == sorted(map(point_key, expected))
    # The reference's four published rows are among them.
    for lr, scheduler, alpha in ((1e-5, "none", 0.5), (1e-5, "none", 0.6), (1e-4, "none", 0.5), (1e-4, "plateau", 0.4)):
        assert any(
            p["optim.lr"] == lr and p["scheduler.name"] == scheduler and p["distill.alpha"] == alpha for p in points
        )
    assert spec.resolved_direction == "maximize" and spec.objective == "val_auc"
    base = resolve_base(spec, spec_path=CONFIGS / "seed_sweep.yaml")
    assert validate_all(spec, base) == 24


def test_demo_sweep_file_is_valid() -> None:
    spec = load_sweep_spec(CONFIGS / "demo_sweep.yaml")
    base = resolve_base(spec, ["data.manifest=/elsewhere/m.csv"], spec_path=CONFIGS / "demo_sweep.yaml")
    assert base["data"]["manifest"] == "/elsewhere/m.csv"
    assert validate_all(spec, base) == len(grid_points(spec)) == 8


def test_unknown_sweep_key_is_named() -> None:
    with pytest.raises(ConfigError, match="grdi: unknown key"):
        parse_sweep_spec({"grdi": {"optim.lr": [1e-4]}, "grid": {"optim.lr": [1e-4]}})
    with pytest.raises(ConfigError, match=r"space\.optim\.lr\.lwo: unknown key"):
        parse_sweep_spec({"mode": "tpe", "space": {"optim.lr": {"lwo": 1e-5, "high": 1e-3}}})
    with pytest.raises(ConfigError, match="mode tpe needs a non-empty 'space'"):
        parse_sweep_spec({"mode": "tpe", "grid": {"optim.lr": [1e-4]}})


def test_direction_follows_the_objective() -> None:
    grid = {"optim.lr": [1e-4]}
    assert parse_sweep_spec({"grid": grid, "objective": "val_loss"}).resolved_direction == "minimize"
    assert parse_sweep_spec({"grid": grid, "objective": "val_accuracy"}).resolved_direction == "maximize"


@pytest.mark.parametrize(
    ("grid", "space", "message"),
    [
        ({"optim.lrr": [1e-4]}, None, "optim.lrr: unknown key"),
        ({"distill.alpha": [0.5, 1.5]}, None, "distill.alpha: Input should be less than or equal to 1"),
        (None, {"distill.loss": {"choices": ["kl", "cosine"]}}, "distill.loss: Input should be"),
        (None, {"optim.lr": {"low": -1.0, "high": 1e-3}}, "optim.lr: Input should be greater than 0"),
    ],
)
def test_bad_trial_config_fails_before_anything_trains(
    tmp_path: Path, grid: dict | None, space: dict | None, message: str
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.touch()
    data = {"base": {"data": {"manifest": str(manifest)}}}
    data.update({"mode": "grid", "grid": grid} if grid else {"mode": "tpe", "space": space})
    log = tmp_path / "log.jsonl"
    with pytest.raises(ConfigError, match=message):
        run_sweep(parse_sweep_spec(data), tmp_path / "out", runner=FakeRunner(str(log)))
    assert not read_log(log) and not (tmp_path / "out").exists()


def test_bad_override_is_named(tmp_path: Path) -> None:
    spec = parse_sweep_spec({"base": {}, "grid": {"optim.lr": [1e-4]}})
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key"):
        run_sweep(spec, tmp_path / "out", overrides=["train.epochz=1"], runner=FakeRunner(str(tmp_path / "log")))


def test_broken_yaml_is_named_by_the_run_config_the_sweep_file_and_the_sweep_base(tmp_path: Path) -> None:
    from dfkd.config import load_config

    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {input_size: [\n")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="listed.yaml: the top level must be a mapping"):
        load_config(listed)
    with pytest.raises(ConfigError, match="cannot read sweep file .*missing.yaml"):
        load_sweep_spec(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_sweep_spec(broken)
    spec = parse_sweep_spec({"base": str(listed), "grid": {"optim.lr": [1e-3]}}, origin="sweep")
    with pytest.raises(ConfigError, match="listed.yaml: the top level must be a mapping"):
        resolve_base(spec)
