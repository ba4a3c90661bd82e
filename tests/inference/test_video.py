"""Videos: frame sampling, per-face frame scores, the aggregated verdict, and live detection on a stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkd.inference.detector import Detector
from dfkd.inference.live import run_live
from dfkd.inference.video import aggregate_frames, iter_video_frames, predict_video
from tests.inference.helpers import write_face_video


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames at 10 fps of a panning face."""
    return write_face_video(tmp_path_factory.mktemp("video") / "face.mp4")


def test_frames_are_sampled_at_the_requested_rate(face_video: Path) -> None:
    frames = list(iter_video_frames(face_video, sample_fps=2.5))
    assert [index for index, _, _ in frames] == [0, 4, 8, 12, 16]
    assert [time_s for _, time_s, _ in frames] == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6])
    assert frames[0][2].size == (256, 256) and frames[0][2].mode == "RGB"
    assert len(list(iter_video_frames(face_video, sample_fps=0, max_frames=7))) == 7


def test_aggregation_is_the_mean_of_the_most_fake_quarter() -> None:
    assert aggregate_frames([0.1, 0.9, 0.2, 0.8, 0.3, 0.1, 0.0, 0.5]) == pytest.approx(0.85)
    assert aggregate_frames([0.4]) == pytest.approx(0.4)
    assert aggregate_frames([0.2, 0.6, 0.4], top_fraction=1.0) == pytest.approx(0.4)


def test_video_verdict_from_per_face_frame_scores(tiny_model: Path, face_video: Path, face_model: Path | None) -> None:
    detector = Detector.load(tiny_model, faces="auto", face_model=face_model, batch_size=3)
    result = predict_video(detector, face_video, sample_fps=5)
    assert result["kind"] == "video" and result["status"] == "ok" and result["n_frames"] == 10
    frame_probs = [frame["fake_prob"] for frame in result["frames"]]
    assert all(len(frame["faces"]) == 1 for frame in result["frames"])
    assert all(frame["fake_prob"] == frame["faces"][0]["fake_prob"] for frame in result["frames"])
    assert result["fake_prob"] == pytest.approx(aggregate_frames(frame_probs))
    assert result["label"] in ("real", "fake") and result["faces"]
    assert result["frames"][1]["index"] == 2 and result["frames"][1]["time_s"] == pytest.approx(0.2)


def test_unreadable_video_is_an_error_result(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    result = predict_video(Detector.load(tiny_model, faces="none"), broken)
    assert result["status"] == "error" and result["error"] and result["fake_prob"] is None


def test_live_scores_the_newest_frames_of_a_stream(tiny_model: Path, face_video: Path) -> None:
    records: list[dict] = []
    summary = run_live(Detector.load(tiny_model, faces="none"), str(face_video), emit=records.append, max_frames=4)
    assert summary["scored"] == len(records) == 4
    sequences = [record["frame"] for record in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4
    assert all(record["fps"] > 0 and record["fake_prob"] is not None for record in records)


def test_overlay_draws_boxes_and_fps_without_touching_the_frame() -> None:
    import numpy as np

    from dfkd.inference.live import draw_overlay

    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    result = {"status": "ok", "fake_prob": 0.9, "faces": [{"box": [40, 30, 100, 100], "score": 0.9, "fake_prob": 0.9}]}
    canvas = draw_overlay(frame, result, threshold=0.5, fps=12.5)
    assert canvas.shape == frame.shape and not frame.any()
    assert (canvas[30, 40:100] == (0, 0, 255)).all()  # a red (fake) box edge, BGR


def test_a_video_whose_name_is_not_utf8_is_an_error_item_not_a_crash(
    tiny_model: Path, face_video: Path, tmp_path: Path
) -> None:
    """OpenCV's reader segfaults on such a name (ending the run and every result): it is refused by name first."""
    import os
    import shutil

    from dfkd.inference.run import detect_paths

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(face_video, folder / "ok.mp4")
    odd = os.fsdecode(os.fsencode(folder) + b"/caf\xe9.mp4")
    shutil.copy(face_video, odd)
    results, _ = detect_paths(Detector.load(tiny_model, faces="none"), [folder], faces="none", max_frames=2)
    by_name = {os.fsencode(Path(result["input"]).name): result for result in results}
    assert by_name[b"ok.mp4"]["status"] == "ok"
    assert by_name[b"caf\xe9.mp4"]["status"] == "error"
    assert "file name is not valid UTF-8" in by_name[b"caf\xe9.mp4"]["error"]  # the item names the file
    with pytest.raises(RuntimeError, match=r"caf\\xe9\.mp4: the file name is not valid UTF-8"):
        run_live(Detector.load(tiny_model, faces="none"), odd, emit=lambda record: None, max_frames=1)


def test_a_video_holds_a_bounded_number_of_decoded_frames_whatever_the_batch_size(
    tiny_model: Path, face_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--batch-size 200 held 200 decoded frames at once (5 GB of 4K frames); the frames are scored 8 at a time."""
    from dfkd.inference import video

    held: list[int] = []
    score = video._score_frames
    monkeypatch.setattr(
        video, "_score_frames", lambda det, frames, faces: held.append(len(frames)) or score(det, frames, faces)
    )
    result = predict_video(Detector.load(tiny_model, faces="none", batch_size=200), face_video, sample_fps=0)
    assert result["n_frames"] == 20 and max(held) == video.MAX_FRAMES_PER_BATCH and sum(held) == 20
