"""Self-blended fakes: deterministic, confined to the face, only the face changes, and a real-only dataset trains."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dfkd.data.blend import (
    LandmarkTable,
    face_hull,
    format_landmarks,
    hull_mask,
    landmarks_in_box,
    parse_landmarks,
    self_blend,
)
from tests.realdata.helpers import ASTRONAUT_BOX, astronaut

# The astronaut's five landmarks as YuNet and CenterFace find them (within a few pixels).
ASTRONAUT_LANDMARKS = np.array([[201.0, 102.0], [247.0, 104.0], [221.0, 125.0], [201.0, 143.0], [240.0, 144.0]])


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.asarray(astronaut())


def test_the_blend_is_deterministic_for_a_seed(pixels: np.ndarray) -> None:
    first = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(7))
    second = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(7))
    other = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(8))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("seed", range(12))
def test_the_mask_lies_within_the_face_hulls_dilation(pixels: np.ndarray, seed: int) -> None:
    _, mask = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(seed))
    eyes = float(np.linalg.norm(ASTRONAUT_LANDMARKS[1] - ASTRONAUT_LANDMARKS[0]))
    radius = int(np.ceil(0.5 * eyes))  # elastic shift ≤ 0.15 · eyes, two blurs ≤ 0.15 · eyes each side
    hull = hull_mask(mask.shape, face_hull(ASTRONAUT_LANDMARKS))
    dilated = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    assert mask.max() > 0.2  # there is a blend
    assert not (mask[dilated == 0] > 0).any()
    # And the hull itself is the face: it covers the detector's face box centre and stays near the box.
    x0, y0, x1, y1 = ASTRONAUT_BOX
    assert hull[(y0 + y1) // 2, (x0 + x1) // 2] == 1
    ys, xs = np.nonzero(hull)
    assert xs.min() > x0 - 0.3 * (x1 - x0) and xs.max() < x1 + 0.3 * (x1 - x0) and ys.max() < y1 + 0.3 * (y1 - y0)


@pytest.mark.parametrize("seed", range(6))
def test_a_blended_image_differs_from_its_source_only_where_the_mask_is_non_zero(pixels: np.ndarray, seed: int) -> None:
    blended, mask = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(seed))
    changed = (blended != pixels).any(axis=2)
    assert changed.any()
    assert not changed[mask == 0].any()


@pytest.mark.parametrize("alter_frame", [False, True])
def test_the_alteration_goes_to_the_face_or_to_the_frame(alter_frame: bool) -> None:
    # A flat grey photo: shifting it changes nothing and down-up sampling or sharpening leave it flat, so any
    # change is the colour alteration, and where it went (face or frame) is plain to see.
    flat = np.full((96, 96, 3), 128, np.uint8)
    points = landmarks_in_box(10, 10, 86, 86)
    face_changed = frame_changed = 0
    for seed in range(16):
        blended, mask = self_blend(flat, points, np.random.default_rng(seed), alter_frame=alter_frame)
        full, outside = mask > 0.999, mask == 0
        if full.any():
            face_changed += bool((blended[full] != 128).any())
        frame_changed += bool((blended[outside] != 128).any())
        if alter_frame and full.any():
            assert (blended[full] == 128).all()  # the pasted face is the photo's own, unaltered
        if not alter_frame:
            assert (blended[outside] == 128).all()  # the frame is the photo's own
    assert (frame_changed if alter_frame else face_changed) >= 8


def test_landmarks_round_trip_and_fallback() -> None:
    assert np.allclose(parse_landmarks(format_landmarks(ASTRONAUT_LANDMARKS)), ASTRONAUT_LANDMARKS)
    assert parse_landmarks("") is None and parse_landmarks("1 2 3") is None and parse_landmarks("nan " * 10) is None
    table = LandmarkTable({})
    fallback = table.get("/nowhere.jpg", (100, 100))
    assert fallback.shape == (5, 2) and (fallback > 10).all() and (fallback < 90).all()
    # The box fallback puts the eyes above the mouth, left to right.
    points = landmarks_in_box(0, 0, 84, 90)
    assert points[0, 0] < points[1, 0] and points[0, 1] < points[3, 1]


def _real_faces(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    base = astronaut().crop(ASTRONAUT_BOX).resize((64, 64))
    for split, n in (("train", count), ("val", count // 2)):
        folder = root / split / "real"
        folder.mkdir(parents=True)
        for index in range(n):
            noisy = np.clip(np.asarray(base).astype(int) + rng.integers(-10, 11, (64, 64, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{index}.png")


def test_a_real_only_dataset_trains_on_self_blended_fakes(tmp_path: Path) -> None:
    from dfkd.config import load_config
    from dfkd.data import build_manifest
    from dfkd.train import train
    from tests.conftest import TINY

    _real_faces(tmp_path / "data", 12)
    build_manifest([tmp_path / "data"], tmp_path / "m.csv")
    config = load_config(
        None,
        [*TINY, f"data.manifest={tmp_path / 'm.csv'}", "train.epochs=1", "data.synthetic_fakes=sbi"],
    )
    result = train(config, tmp_path / "run")
    assert np.isfinite(result.history[0]["val_loss"]) and np.isfinite(result.history[0]["val_auc"])


@pytest.mark.parametrize(
    ("setting", "attribute"),
    [("synthetic_parts", "parts_share"), ("synthetic_donor", "donor_share"), ("synthetic_frame", "frame_share")],
)
def test_blend_settings_reach_both_splits_and_are_validated(tmp_path: Path, setting: str, attribute: str) -> None:
    from dfkd.config import ConfigError, load_config
    from dfkd.data import build_manifest, read_manifest
    from dfkd.train.data import build_datasets
    from dfkd.train.setup import student_view
    from tests.conftest import TINY

    _real_faces(tmp_path / "data", 4)
    build_manifest([tmp_path / "data"], tmp_path / "m.csv")
    settings = [*TINY, f"data.manifest={tmp_path / 'm.csv'}", "data.synthetic_fakes=sbi"]
    config = load_config(None, [*settings, f"data.{setting}=0.7"])
    data = build_datasets(config, read_manifest(tmp_path / "m.csv"), student_view(config))
    assert getattr(data.train_set, attribute) == 0.7 and getattr(data.val_set, attribute) == 0.7
    with pytest.raises(ConfigError, match=setting):
        load_config(None, [*settings, f"data.{setting}=1.5"])


def test_self_blended_validation_fakes_are_fixed_and_labelled(tmp_path: Path) -> None:
    from dfkd.data import build_manifest, read_manifest
    from dfkd.data.blend import SelfBlendedDataset
    from dfkd.data.dataset import ManifestDataset

    _real_faces(tmp_path / "data", 12)
    build_manifest([tmp_path / "data"], tmp_path / "m.csv")
    base = ManifestDataset(read_manifest(tmp_path / "m.csv"), "val")
    first = SelfBlendedDataset(base, LandmarkTable({}), share=0.5, blend_size=64, fixed_seed=3, jpeg_p=0.0)
    second = SelfBlendedDataset(base, LandmarkTable({}), share=0.5, blend_size=64, fixed_seed=3, jpeg_p=0.0)
    assert 0 < first.labels.sum() < len(first)
    for index in range(len(first)):
        image, label, _ = first[index]
        again, _, _ = second[index]
        assert label == first.labels[index]
        assert np.array_equal(np.asarray(image), np.asarray(again))
        if label == 0:
            assert np.array_equal(np.asarray(image), np.asarray(Image.open(base.samples[index].path).convert("RGB")))


def test_blend_preview_writes_real_mask_fake_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dfkd.cli import app

    _real_faces(tmp_path / "data", 4)
    (tmp_path / "data" / "train" / "real" / "broken.png").write_bytes(b"not an image")
    result = CliRunner().invoke(
        app, ["blend-preview", str(tmp_path / "data"), "--out", str(tmp_path / "grid.png"), "-n", "3", "--size", "48"]
    )
    assert result.exit_code == 0, result.output
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width == 3 * 48 and grid.height % 48 == 0 and 1 <= grid.height // 48 <= 3
    middle = np.asarray(grid)[:48, 48:96]
    assert middle.max() > 0 and middle[0, 0].max() == 0  # the mask column: face white, corner black


def test_a_scaled_decode_blends_where_the_face_is(tmp_path: Path) -> None:
    """Landmarks are in the stored image's pixels: a half- or quarter-size decode must scale them."""
    from dfkd.data import build_manifest, read_manifest
    from dfkd.data.blend import SelfBlendedDataset
    from dfkd.data.dataset import ManifestDataset

    folder = tmp_path / "faces" / "val" / "real"
    folder.mkdir(parents=True)
    astronaut().save(folder / "a.jpg", quality=95)  # 512 px, ASTRONAUT_LANDMARKS in its pixels
    (tmp_path / "faces" / "train" / "real").mkdir(parents=True)
    astronaut().save(tmp_path / "faces" / "train" / "real" / "a.jpg", quality=95)
    build_manifest([tmp_path / "faces"], tmp_path / "m.csv")
    base = ManifestDataset(read_manifest(tmp_path / "m.csv"), "val", decode_side=128)
    table = LandmarkTable({str((folder / "a.jpg").resolve()): ASTRONAUT_LANDMARKS})
    blended = SelfBlendedDataset(base, table, share=1.0, blend_size=128, fixed_seed=0, jpeg_p=0.0)
    image, label, _ = blended[0]
    assert label == 1 and image.size == (128, 128)  # a 1/4-scale decode
    changed = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(base.load_image(0), dtype=np.int16)).max(axis=2)
    x0, y0, x1, y1 = (round(value / 4) for value in ASTRONAUT_BOX)
    inside = changed[y0:y1, x0:x1]
    assert inside.mean() > 2 * max(changed.mean(), 0.1)  # the change is on the face, not elsewhere
    assert changed[:, : x0 - 8].max() == 0 and changed[y1 + 12 :, :].max() == 0


def test_part_masks_cover_the_named_parts_only() -> None:
    from dfkd.data.blend import parts_mask

    left, right, nose, mouth_left, mouth_right = ASTRONAUT_LANDMARKS.astype(int)
    mouth = (mouth_left + mouth_right) // 2
    eyes = parts_mask((512, 512), ASTRONAUT_LANDMARKS, ("eyes",))
    assert eyes[left[1], left[0]] == 1 and eyes[right[1], right[0]] == 1 and eyes[mouth[1], mouth[0]] == 0
    lower = parts_mask((512, 512), ASTRONAUT_LANDMARKS, ("mouth",))
    assert lower[mouth[1], mouth[0]] == 1 and lower[left[1], left[0]] == 0 and lower[nose[1] - 10, nose[0]] == 0
    assert 0 < lower.sum() < 0.25 * hull_mask((512, 512), face_hull(ASTRONAUT_LANDMARKS)).sum()


@pytest.mark.parametrize("seed", range(8))
def test_part_blends_stay_in_the_face_and_change_only_the_masked_pixels(pixels: np.ndarray, seed: int) -> None:
    blended, mask = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(seed), parts_share=1.0)
    eyes = float(np.linalg.norm(ASTRONAUT_LANDMARKS[1] - ASTRONAUT_LANDMARKS[0]))
    radius = int(np.ceil(0.5 * eyes))
    hull = hull_mask(mask.shape, face_hull(ASTRONAUT_LANDMARKS))
    dilated = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    assert mask.max() > 0.2 and not (mask[dilated == 0] > 0).any()
    assert (mask > 0.5 * mask.max()).sum() < 0.6 * hull.sum()  # parts, not the whole face
    assert not ((blended != pixels).any(axis=2) & (mask == 0)).any()


def test_parts_share_zero_keeps_the_whole_face_blends_of_a_seed(pixels: np.ndarray) -> None:
    plain = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(3))
    zero = self_blend(pixels, ASTRONAUT_LANDMARKS, np.random.default_rng(3), parts_share=0.0)
    assert np.array_equal(plain[0], zero[0])


def test_a_donor_is_aligned_onto_the_faces_five_points(pixels: np.ndarray) -> None:
    from dfkd.data.blend import align_donor

    # The donor: the astronaut shrunk to half size and moved; aligning it must bring its face back onto hers.
    matrix = np.array([[0.5, 0.0, 40.0], [0.0, 0.5, 90.0]])
    donor = cv2.warpAffine(pixels, matrix, (300, 300))
    donor_points = ASTRONAUT_LANDMARKS * 0.5 + np.array([40.0, 90.0])
    aligned = align_donor(donor, donor_points, ASTRONAUT_LANDMARKS, pixels.shape[:2])
    assert aligned.shape == pixels.shape
    x0, y0, x1, y1 = ASTRONAUT_BOX
    face, back = aligned[y0:y1, x0:x1].astype(int), pixels[y0:y1, x0:x1].astype(int)
    assert np.abs(face - back).mean() < 12  # the same face, blurred by the round trip through half size


def _stripes(colour: tuple[int, int, int], size: int = 96) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:] = colour
    image[::4] = 128  # some structure, so the alterations have something to act on
    return image


@pytest.mark.parametrize("seed", range(4))
def test_a_donor_blend_pastes_the_other_face_and_only_inside_the_mask(seed: int) -> None:
    points = landmarks_in_box(10, 10, 86, 86)
    red, blue = _stripes((220, 30, 30)), _stripes((30, 30, 220))
    blended, mask = self_blend(red, points, np.random.default_rng(seed), donor=(blue, points))
    changed = (blended != red).any(axis=2)
    assert changed.any() and not changed[mask == 0].any()
    strong = mask > 0.9 * mask.max()
    # Where the blend is strongest the pixels lean blue: they came from the donor, not from the face itself.
    assert (blended[strong][:, 2].astype(int) - blended[strong][:, 0].astype(int)).mean() > 0


def test_donor_blends_in_a_dataset_come_from_another_real_and_are_fixed_for_a_seed(tmp_path: Path) -> None:
    from dfkd.data import build_manifest, read_manifest
    from dfkd.data.blend import SelfBlendedDataset
    from dfkd.data.dataset import ManifestDataset

    folder = tmp_path / "data" / "val" / "real"
    folder.mkdir(parents=True)
    Image.fromarray(_stripes((220, 30, 30), 64)).save(folder / "red.png")
    Image.fromarray(_stripes((30, 30, 220), 64)).save(folder / "blue.png")
    (tmp_path / "data" / "train" / "real").mkdir(parents=True)
    Image.fromarray(_stripes((30, 220, 30), 64)).save(tmp_path / "data" / "train" / "real" / "green.png")
    build_manifest([tmp_path / "data"], tmp_path / "m.csv")
    base = ManifestDataset(read_manifest(tmp_path / "m.csv"), "val")
    made = [
        SelfBlendedDataset(base, LandmarkTable({}), share=1.0, blend_size=64, fixed_seed=5, jpeg_p=0.0, donor_share=1.0)
        for _ in range(2)
    ]
    for index in range(len(base)):
        image, label, _ = made[0][index]
        assert label == 1 and np.array_equal(np.asarray(image), np.asarray(made[1][index][0]))
        pixels = np.asarray(image).astype(int)
        own = np.asarray(Image.open(base.samples[index].path).convert("RGB")).astype(int)
        centre = (pixels - own)[24:40, 24:40].mean(axis=(0, 1))
        # The red face took blue from its only fellow real of the split, and the blue face red: never green, which
        # is in another split.
        red_face = own[1, 1, 0] > own[1, 1, 2]
        assert (centre[2] > 0 and centre[0] < 0) if red_face else (centre[0] > 0 and centre[2] < 0)
        assert abs(centre[1]) < max(abs(centre[0]), abs(centre[2]))
    with pytest.raises(ValueError, match="another face"):
        SelfBlendedDataset(base, LandmarkTable({}), share=1.0, blend_size=64, donor_share=2.0)


@pytest.mark.parametrize("setting", ["donor_share", "frame_share"])
def test_a_zero_share_keeps_the_self_blends_of_a_seed(tmp_path: Path, setting: str) -> None:
    from dfkd.data import build_manifest, read_manifest
    from dfkd.data.blend import SelfBlendedDataset
    from dfkd.data.dataset import ManifestDataset

    _real_faces(tmp_path / "data", 6)
    build_manifest([tmp_path / "data"], tmp_path / "m.csv")
    base = ManifestDataset(read_manifest(tmp_path / "m.csv"), "val")
    plain = SelfBlendedDataset(base, LandmarkTable({}), share=1.0, blend_size=64, fixed_seed=2, jpeg_p=0.0)
    zero = SelfBlendedDataset(
        base, LandmarkTable({}), share=1.0, blend_size=64, fixed_seed=2, jpeg_p=0.0, **{setting: 0.0}
    )
    for index in range(len(base)):
        assert np.array_equal(np.asarray(plain[index][0]), np.asarray(zero[index][0]))


def test_blend_preview_shows_donor_blends_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dfkd.cli import app

    folder = tmp_path / "data" / "real"
    folder.mkdir(parents=True)
    Image.fromarray(_stripes((220, 30, 30), 48)).save(folder / "a_red.png")
    Image.fromarray(_stripes((30, 30, 220), 48)).save(folder / "b_blue.png")
    result = CliRunner().invoke(
        app, ["blend-preview", str(tmp_path / "data"), "--out", str(tmp_path / "g.png"), "--size", "48", "--donor", "1"]
    )
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(tmp_path / "g.png")).astype(int)
    blue_row_fake = grid[48:96, 96:144][16:32, 16:32].mean(axis=(0, 1))
    assert blue_row_fake[0] > 60  # the blue face's fake took the red face above it


def test_blend_preview_shows_frame_blends_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dfkd.cli import app

    folder = tmp_path / "data" / "real"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save(folder / "grey.png")
    frames_changed = 0
    for seed in range(6):
        out = tmp_path / f"g{seed}.png"
        args = ["blend-preview", str(tmp_path / "data"), "--out", str(out), "--size", "48", "--frame", "1"]
        result = CliRunner().invoke(app, [*args, "--seed", str(seed)])
        assert result.exit_code == 0, result.output
        fake = np.asarray(Image.open(out)).astype(int)[:, 96:144]
        frames_changed += bool((fake[:3, :3] != 128).any())  # a corner: frame, never face
    assert frames_changed >= 3
