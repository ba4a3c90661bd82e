"""data.train_patch: training on random patches of each view, validated and scored on whole views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfkd.config import ConfigError, load_config
from dfkd.data import build_train_transform
from dfkd.data.manifest import read_manifest
from dfkd.train import train
from dfkd.train.data import build_datasets
from dfkd.train.setup import check_model_settings, student_view
from tests.conftest import TINY


def test_the_training_view_ends_with_a_random_patch_of_the_whole_view() -> None:
    # A horizontal ramp: where a patch was taken shows in its values.
    ramp = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3)))
    patched = build_train_transform(64, 64, augment="basic", train_patch=16)
    torch.manual_seed(0)
    views = [patched(ramp) for _ in range(8)]
    whole = build_train_transform(64, 64, augment="basic")(ramp)
    assert whole.shape == (3, 64, 64) and all(view.shape == (3, 16, 16) for view in views)
    # A patch spans 16 of the ramp's 64 columns (flipped or not), so a quarter of the whole view's value range.
    whole_range = float(whole[0].max() - whole[0].min())
    assert all(float(view[0].max() - view[0].min()) < 0.3 * whole_range for view in views)
    assert len({round(float(view[0].mean()), 3) for view in views}) > 1  # not one fixed place


def test_patch_settings_are_checked_when_the_config_is_read() -> None:
    with pytest.raises(ValueError, match="train_patch 300 is larger than input_size 224"):
        load_config(None, ["data.augment=quality", "data.train_patch=300"])
    with pytest.raises(ValueError, match="train_patch needs a random training view"):
        load_config(None, ["data.train_patch=64"])  # augment none: the training view is the evaluation view
    with pytest.raises(ValueError, match="rotation, sharpen need a random training view"):  # were silently ignored
        load_config(None, ["data.rotation=30", "data.sharpen=1.0"])
    load_config(None, ["data.augment=basic", "data.rotation=30", "data.sharpen=1.0"])
    with pytest.raises(ValueError, match="train_patch"):
        load_config(None, ["data.augment=quality", "data.train_patch=4"])


def test_a_network_that_takes_one_input_size_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            f"data.manifest={tmp_path / 'absent.csv'}",
            "model.name=timm/vit_tiny_patch16_224",
            "data.augment=quality",
            "data.train_patch=64",
        ],
    )
    with pytest.raises(ConfigError, match="train_patch=64: timm/vit_tiny_patch16_224 cannot take 64-px inputs"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # these take both sizes; the meta-device forward draws no random number
    for name in ("resnet8_fast", "mobilenet_v2"):
        torch.manual_seed(0)
        before = torch.random.get_rng_state()
        check_model_settings(load_config(None, [f"model.name={name}", "data.augment=basic", "data.train_patch=64"]))
        assert torch.equal(torch.random.get_rng_state(), before)


def test_a_model_trained_on_patches_learns_and_is_validated_on_whole_views(easy_manifest: Path, tmp_path: Path) -> None:
    settings = [*TINY, f"data.manifest={easy_manifest}", "model.name=resnet8_fast", "data.augment=basic"]
    config = load_config(None, [*settings, "data.train_patch=16", "train.epochs=3"])
    data = build_datasets(config, read_manifest(easy_manifest), student_view(config))
    assert data.train_set[0][0].shape == (3, 16, 16) and data.val_set[0][0].shape == (3, 32, 32)
    result = train(config, tmp_path / "run")
    assert result.best_value > 0.9, result.history  # the easy set's classes differ in every part of the image


def test_an_online_teacher_that_takes_one_input_size_is_refused_by_name(easy_manifest: Path, tmp_path: Path) -> None:
    from dfkd.models import create_model, save_model

    teacher = tmp_path / "vit teacher.safetensors"
    save_model(create_model("timm/vit_tiny_patch16_224"), teacher)  # takes 224-px views, nothing else
    settings = [*TINY, f"data.manifest={easy_manifest}", "data.augment=basic", "data.resize_size=224"]
    settings += ["data.input_size=224", "data.train_patch=64", f"teacher.model={teacher}", "teacher.online=true"]
    settings += ["distill.loss=kl"]
    with pytest.raises(ConfigError, match=r"train_patch=64: the online teacher .*vit teacher\.safetensors cannot take"):
        train(load_config(None, settings), tmp_path / "run")


def test_patches_of_part_blends_are_warned_about(easy_manifest: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A patch can miss a blend confined to the eyes, nose or mouth and still be labelled fake."""
    from dfkd.train.data import build_datasets
    from dfkd.train.setup import student_view

    settings = [f"data.manifest={easy_manifest}", "data.resize_size=40", "data.input_size=32", "data.augment=basic"]
    settings += ["data.train_patch=16", "data.synthetic_fakes=sbi"]
    for parts, warned in ((0.0, False), (0.5, True)):
        caplog.clear()
        config = load_config(None, [*settings, f"data.synthetic_parts={parts}"])
        with caplog.at_level("WARNING"):
            build_datasets(config, read_manifest(easy_manifest), student_view(config))
        assert ("can miss a blend confined to the eyes" in caplog.text) is warned
