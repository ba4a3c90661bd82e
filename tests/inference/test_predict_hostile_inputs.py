"""Detector.predict on hostile inputs: each bad one gets its own error, saying why, and the others are scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfkd.inference.detector import Detector
from tests.inference.helpers import noise_image


def test_bad_arrays_and_paths_get_their_own_errors(tiny_model: Path, tmp_path: Path) -> None:
    detector = Detector.load(tiny_model, faces="none", workers=0)
    rgb = np.asarray(noise_image(0))
    with_inf = rgb / 255.0
    with_inf[0, 0, 0] = np.inf
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    inputs = [
        rgb,
        rgb.astype(np.uint16) * 257,
        with_inf,
        -rgb.astype(np.int16),
        np.zeros((0, 0, 3), dtype=np.uint8),
        Image.new("RGB", (0, 0)),
        np.empty((4, 4, 3), dtype=object),
        tmp_path,
        video,
        rgb,
    ]
    results = detector.predict(inputs)
    assert [result["error"] for result in results] == [
        None,
        None,
        "array has non-finite values",
        "array has negative values (int16)",
        "empty image (0x0)",
        "empty image (0x0)",
        "unsupported array dtype object",
        "cannot read: is a directory",
        "a video: Detector.predict takes images; use dfkd detect or dfkd.inference.video.predict_video",
        None,
    ]
    assert [result["status"] for result in results] == ["ok", "ok"] + ["error"] * 7 + ["ok"]
    # A 16-bit array is the same picture as its 8-bit one, not a clipped white image.
    assert results[1]["fake_prob"] == pytest.approx(results[0]["fake_prob"])
    assert results[9]["fake_prob"] == pytest.approx(results[0]["fake_prob"])
