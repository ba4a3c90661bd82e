"""Reference preprocessing, augmentations, and reading odd images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from dfkd.data import ImageLoadError, build_eval_transform, build_train_transform, open_image, to_pil


def _photo(size: tuple[int, int] = (300, 260)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def test_eval_transform_equals_reference_pipeline() -> None:
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    for image in (_photo(), _photo((256, 256)), _photo((640, 480))):
        ours = build_eval_transform()(image)
        assert ours.shape == (3, 224, 224)
        assert torch.max(torch.abs(ours - reference(image))).item() <= 1e-6


def test_train_transform_none_is_the_eval_transform() -> None:
    image = _photo()
    assert torch.equal(build_train_transform(augment="none")(image), build_eval_transform()(image))


@pytest.mark.parametrize("augment", ["basic", "robust", "crop"])
def test_augmentations_keep_shape_and_vary(augment: str) -> None:
    torch.manual_seed(0)
    transform = build_train_transform(resize_size=128, input_size=96, augment=augment)
    outputs = [transform(_photo()) for _ in range(8)]
    assert all(o.shape == (3, 96, 96) for o in outputs)
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])


def test_rotation_turns_training_images_so_alignment_tells_no_class() -> None:
    from dfkd.config import load_config

    image = Image.new("RGB", (64, 64), (0, 0, 0))
    image.paste((255, 255, 255), (0, 30, 64, 34))  # a level line, like the eyes of an aligned portrait
    level = build_train_transform(64, 64, augment="basic")
    turned = build_train_transform(64, 64, augment="basic", rotation=30)
    assert turned.transforms[1].__class__.__name__ == "RandomRotation"
    torch.manual_seed(0)
    rows_level = {int((level(image)[0] > 0).any(dim=1).sum()) for _ in range(5)}
    rows_turned = {int((turned(image)[0] > 0).any(dim=1).sum()) for _ in range(5)}
    assert rows_level == {4} and max(rows_turned) > 10  # a tilted line spans many rows
    with pytest.raises(ValueError, match="rotation"):
        load_config(None, ["data.rotation=200"])


def test_sharpen_adds_edge_halos_to_training_images_when_asked() -> None:
    from dfkd.config import load_config
    from dfkd.train.data import train_view_changes

    image = Image.new("RGB", (64, 64), (90, 90, 90))
    image.paste((160, 160, 160), (32, 0, 64, 64))  # one sharp edge: halos show as over- and undershoot
    plain = build_train_transform(64, 64, augment="basic")
    sharpened = build_train_transform(64, 64, augment="basic", sharpen=1.0)
    assert "RandomSharpen" not in repr(plain) and "RandomSharpen(p=1.0)" in repr(sharpened)
    torch.manual_seed(0)
    span = build_eval_transform(64, 64)(image)[0]
    for _ in range(4):
        out = sharpened(image)[0]
        assert out.min() < span.min() - 0.05 and out.max() > span.max() + 0.05  # darker and brighter than either side
    config = load_config(None, ["data.augment=quality", "data.sharpen=0.3"])
    assert train_view_changes(config)["sharpen"] == 0.3
    with pytest.raises(ValueError, match="sharpen"):
        load_config(None, ["data.sharpen=1.5"])


def test_unknown_augment_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown augment"):
        build_train_transform(augment="fancy")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_odd_colour_modes_load_as_rgb(tmp_path: Path, mode: str) -> None:
    base = _photo((50, 40))
    if mode == "I;16":
        array = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        image = Image.fromarray(array)
        path = tmp_path / "x.png"
    else:
        image = base.convert(mode)
        path = tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png")
    image.save(path)
    loaded = open_image(path)
    assert loaded.mode == "RGB" and loaded.size == (50, 40)
    if mode == "I;16":  # 16-bit values are scaled to 8 bits, not clipped
        assert np.asarray(loaded).max() > 128


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    image = _photo((60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert open_image(path).size == (30, 60)


def test_unreadable_files_raise_errors_naming_file_and_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("nope")
    buffer = io.BytesIO()
    _photo().save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    for name, reason in (("empty.jpg", "empty"), ("text.jpg", "not an image"), ("cut.jpg", "truncated")):
        with pytest.raises(ImageLoadError) as info:
            open_image(tmp_path / name)
        assert name in str(info.value) and reason in info.value.reason
    with pytest.raises(ImageLoadError, match="cannot read"):
        open_image(tmp_path / "missing.jpg")


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dfkd.data.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    _photo((100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="too large"):
        open_image(tmp_path / "big.png")


def test_arrays_and_pil_images_convert_to_rgb() -> None:
    assert to_pil(np.zeros((10, 12), dtype=np.uint8)).size == (12, 10)
    assert to_pil(np.zeros((10, 12, 4), dtype=np.uint8)).mode == "RGB"
    assert to_pil(np.ones((5, 5, 3), dtype=np.float32)).getpixel((0, 0)) == (255, 255, 255)
    assert to_pil(_photo().convert("L")).mode == "RGB"
    with pytest.raises(ImageLoadError, match="shape"):
        to_pil(np.zeros((2, 3, 4, 5), dtype=np.uint8))
