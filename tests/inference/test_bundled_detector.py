"""The bundled general detector: shipped in the package, under 1 MB, used when no model is given, with a card that
states what it was trained on and what was measured."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.pretrained import default_model_path
from tests.realdata.helpers import astronaut


def test_the_bundled_model_ships_inside_the_package_and_is_small() -> None:
    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 1_000_000


def test_detector_load_without_a_path_scores_the_astronaut_offline() -> None:
    from dfkd import Detector

    detector = Detector.load(faces="none")  # no face detector needed: the photo is scored whole
    assert detector.card.architecture.name == "resnet8_fast"
    (result,) = detector.predict([np.asarray(astronaut())])
    assert result["status"] == "ok" and 0.0 <= result["fake_prob"] <= 1.0
    assert result["label"] in ("real", "fake") and result["threshold"] == detector.card.threshold


def test_the_bundled_card_states_its_training_data_generalisation_blind_spots_and_retraining() -> None:
    from dfkd.models import read_model_card

    card = read_model_card(default_model_path())
    summary = card.training.model_dump()
    assert "realfaces-dev" in summary["manifest"] and summary["data"]
    assert summary["generalisation"]["unseen_source"]  # measured without that source in training
    # and measured without that source's fakes only, its genuine photos in training, as the bundle knows them
    assert summary["generalisation"]["unseen_fakes"].keys() == summary["generalisation"]["unseen_source"].keys()
    for reading in ("unseen_source", "unseen_fakes"):
        for figures in summary["generalisation"][reading].values():
            assert 0.0 <= figures["auc"] <= 1.0 and 0.0 <= figures["fpr_on_reals"] <= 1.0
    assert summary["blind_spots"] and "benchmarks/generalisation.py" in summary["retrain"]
    # The crops it was trained on travel with it: detect frames faces the same way.
    assert card.face_crop is not None and f"margin {card.face_crop.margin:g}" in summary["manifest"]
    assert 0.0 <= card.threshold <= 1.0 and card.threshold_source


def test_info_without_a_model_prints_the_bundled_card() -> None:
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "bundled general detector" in result.output and "resnet8_fast" in result.output
