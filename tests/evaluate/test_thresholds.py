"""Threshold policies: the EER point, or a cap on the share of validation reals called fake."""

from __future__ import annotations

import numpy as np
import pytest

from dfkd.thresholds import choose_threshold, describe_policy, eer_threshold, fpr_threshold, parse_policy


@pytest.mark.parametrize("max_fpr", [0.01, 0.05, 0.1, 0.3])
def test_fpr_threshold_calls_at_most_that_share_of_reals_fake_and_no_fewer_than_it_must(max_fpr: float) -> None:
    rng = np.random.default_rng(0)
    reals, fakes = rng.beta(2, 5, 200), rng.beta(5, 2, 50)
    labels = np.r_[np.zeros(200), np.ones(50)]
    threshold = fpr_threshold(labels, np.r_[reals, fakes], max_fpr)
    called_fake = (reals >= threshold).sum()
    assert called_fake <= max_fpr * 200
    assert called_fake >= int(max_fpr * 200) - 1  # the lowest such threshold, not a needlessly high one
    assert (reals >= threshold).mean() < (reals >= np.median(reals)).mean()


def test_fpr_threshold_on_ties_and_saturated_scores_stays_in_range() -> None:
    labels = np.array([0, 0, 0, 0, 1])
    # reals saturated at 1.0 cannot be kept real (prob >= threshold is fake): the highest threshold there is
    assert fpr_threshold(labels, np.array([1.0, 1.0, 0.2, 0.2, 1.0]), 0.05) == 1.0
    threshold = fpr_threshold(labels, np.array([0.9, 0.2, 0.2, 0.2, 1.0]), 0.25)
    assert 0.2 < threshold <= 0.9  # one real (0.9) may be called fake, the tied 0.2s may not
    assert fpr_threshold(np.array([1, 1]), np.array([0.3, 0.9]), 0.05) == 0.5  # no reals: the default


def test_policies_parse_choose_and_describe() -> None:
    assert parse_policy("eer") is None and parse_policy(" FPR=0.05 ") == 0.05
    for bad in ("fpr=0", "fpr=1.5", "fpr=x", "roc", ""):
        with pytest.raises(ValueError, match="'eer' or 'fpr=X'"):
            parse_policy(bad)
    labels = np.r_[np.zeros(100), np.ones(100)]
    probs = np.r_[np.linspace(0, 0.6, 100), np.linspace(0.4, 1.0, 100)]
    assert choose_threshold(labels, probs, "fpr=0.01") > choose_threshold(labels, probs, "eer")
    assert describe_policy("eer") == "validation EER" and "5 % of reals" in describe_policy("fpr=0.05")
    assert parse_policy("auto") is None  # evaluate's --threshold auto is the EER point
    with pytest.raises(ValueError, match="both real and fake"):
        choose_threshold(np.zeros(5), np.linspace(0, 1, 5), "eer")
    with pytest.raises(ValueError, match="needs real images"):
        choose_threshold(np.ones(5), np.linspace(0, 1, 5), "fpr=0.05")
    assert 0.6 < choose_threshold(np.zeros(5), np.linspace(0, 1, 5), "fpr=0.25") < 1.0  # reals only will do


def test_train_threshold_policy_is_validated_and_reaches_the_card(tmp_path, easy_manifest) -> None:
    from dfkd.config import ConfigError, load_config
    from dfkd.models import read_model_card
    from dfkd.train import train
    from tests.conftest import TINY

    with pytest.raises(ConfigError, match="threshold"):
        load_config(None, ["train.threshold=fpr=2"])
    config = load_config(None, [*TINY, f"data.manifest={easy_manifest}", "train.epochs=1", "train.threshold=fpr=0.05"])
    result = train(config, tmp_path / "run")
    card = read_model_card(result.model_path)
    assert card.threshold_source == "validation: ≤ 5 % of reals fake during training"
    from typer.testing import CliRunner

    from dfkd.cli import app

    args = ["evaluate", str(result.model_path), "--manifest", str(easy_manifest), "--num-workers", "0"]
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "eval"), "--threshold", "fpr=0.2"])
    assert done.exit_code == 0, done.output
    assert read_model_card(result.model_path).threshold_source == "validation: ≤ 20 % of reals fake"
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--threshold", "fpr=3"])
    assert bad.exit_code != 0 and "'eer' or 'fpr=X'" in bad.output

    # A cap on false positives needs validation reals only: a reals-only validation split (self-blended training).
    from dfkd.evaluate.evaluator import evaluate_model

    reals_only = tmp_path / "reals_only.csv"
    rows = easy_manifest.read_text().splitlines()
    reals_only.write_text("\n".join(row for row in rows if ",fake,val," not in row) + "\n")
    model = result.model_path
    metrics = evaluate_model(model, reals_only, tmp_path / "reals", threshold="fpr=0.1", num_workers=0)
    assert metrics["threshold"] == read_model_card(model).threshold
    with pytest.raises(ValueError, match="val split: the EER threshold needs both real and fake"):
        evaluate_model(model, reals_only, tmp_path / "eer", threshold="auto", num_workers=0)

    # set_threshold stores the same point evaluate_model chooses, scoring the validation split only.
    from dfkd.evaluate.evaluator import set_threshold

    assert set_threshold(model, easy_manifest, "fpr=0.2", num_workers=0) == pytest.approx(
        evaluate_model(model, easy_manifest, tmp_path / "again", threshold="fpr=0.2", num_workers=0)["threshold"]
    )
    assert read_model_card(model).threshold_source == "validation: ≤ 20 % of reals fake"
    with pytest.raises(ValueError, match="reals_only.csv: val split: the EER threshold"):
        set_threshold(model, reals_only, "eer", num_workers=0)


def test_the_eer_is_read_on_every_roc_point_not_the_thinned_curve() -> None:
    """The rates meet at 0.7 (one real of four above it, one fake of four below): 0.25. sklearn's thinned ROC curve
    drops the collinear points 0.9, 0.8 and 0.7 and gave 0.125 at 0.35."""
    eer, threshold = eer_threshold([0, 0, 0, 0, 1, 1, 1, 1], [0.95, 0.1, 0.1, 0.1, 0.9, 0.8, 0.7, 0.6])
    assert eer == pytest.approx(0.25) and 0.6 < threshold <= 0.7
