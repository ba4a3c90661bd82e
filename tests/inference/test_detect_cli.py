"""`dfkd detect`: folders mixing good and broken files, videos, JSON / CSV schemas, Grad-CAM, exit codes, live."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.inference.report import CSV_COLUMNS, JSON_SCHEMA_VERSION
from tests.inference.helpers import write_face_video, write_mixed_folder

RESULT_KEYS = {"input", "kind", "status", "error", "fake_prob", "label", "threshold", "faces", "width", "height"}
runner = CliRunner()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good images, three broken ones, a README and a video, nested."""
    root = write_mixed_folder(tmp_path_factory.mktemp("mixed") / "inputs")
    write_face_video(root / "nested" / "clip.mp4", n_frames=12)
    return root


def test_detect_on_a_mixed_folder_writes_json_and_csv(
    tiny_model: Path, mixed_folder: Path, tmp_path: Path, face_model: Path | None
) -> None:
    json_path, csv_path, cams = tmp_path / "out.json", tmp_path / "out.csv", tmp_path / "cams"
    arguments = ["detect", str(mixed_folder), "--model", str(tiny_model), "--faces", "auto", "--fps", "5"]
    arguments += ["--face-model", str(face_model)] if face_model else []
    result = runner.invoke(app, [*arguments, "--json", str(json_path), "--csv", str(csv_path), "--explain", str(cams)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "truncated.jpg: truncated or corrupt image" in output and "empty.png: empty file" in output
    assert "text.jpg: not an image" in output

    report = json.loads(json_path.read_text())
    assert report["schema"] == JSON_SCHEMA_VERSION and report["architecture"] == "resnet8_fast"
    assert report["backend"] == "torch" and report["faces"] == "auto" and report["threshold"] == 0.5
    called_fake = sum(item["label"] == "fake" for item in report["results"])
    assert report["summary"] == {"n_inputs": 7, "ok": 2, "no_face": 2, "error": 3, "called_fake": called_fake}
    assert f"{called_fake} of 4 scored inputs called fake" in output
    by_name = {Path(item["input"]).name: item for item in report["results"]}
    assert set(by_name) == {
        "astronaut.jpg",
        "noise.png",
        "noise2.jpg",
        "truncated.jpg",
        "empty.png",
        "text.jpg",
        "clip.mp4",
    }
    assert all(set(item) >= RESULT_KEYS for item in report["results"])
    assert by_name["astronaut.jpg"]["status"] == "ok" and len(by_name["astronaut.jpg"]["faces"]) == 1
    face = by_name["astronaut.jpg"]["faces"][0]
    assert set(face) == {"box", "score", "fake_prob"} and len(face["box"]) == 4
    assert by_name["noise.png"]["status"] == "no_face"
    assert by_name["empty.png"]["error"] == "empty file (0 bytes)"
    video = by_name["clip.mp4"]
    assert video["kind"] == "video" and video["n_frames"] == 6 and len(video["frames"]) == 6
    assert set(video["frames"][0]) >= {"index", "time_s", "status", "fake_prob", "faces"}

    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 7
    csv_by_name = {Path(row["input"]).name: row for row in rows}
    assert csv_by_name["truncated.jpg"]["status"] == "error" and csv_by_name["truncated.jpg"]["fake_prob"] == ""
    assert float(csv_by_name["astronaut.jpg"]["fake_prob"]) == pytest.approx(by_name["astronaut.jpg"]["fake_prob"])
    assert csv_by_name["clip.mp4"]["n_frames"] == "6" and csv_by_name["astronaut.jpg"]["n_faces"] == "1"

    overlays = sorted(cams.glob("*.png"))
    assert len(overlays) == 3  # the three readable images; videos are not explained
    assert by_name["astronaut.jpg"]["explanation"] in {str(path) for path in overlays}


def test_detect_exits_non_zero_only_when_nothing_was_processed(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"nope")
    (broken / "b.png").write_bytes(b"")
    arguments = ["detect", str(broken), str(tmp_path / "missing.jpg"), "--model", str(tiny_model), "--faces", "none"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "nothing could be processed" in output and "missing.jpg: not found" in output


def test_detect_with_an_onnx_model_and_faces_none(tiny_onnx: Path, mixed_folder: Path, tmp_path: Path) -> None:
    json_path = tmp_path / "onnx.json"
    arguments = ["detect", str(mixed_folder / "noise.png"), str(mixed_folder / "astronaut.jpg"), "--faces", "none"]
    result = runner.invoke(app, [*arguments, "--model", str(tiny_onnx), "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(json_path.read_text())
    assert report["backend"] == "onnx" and report["precision"] == "fp32"
    assert [item["status"] for item in report["results"]] == ["ok", "ok"]
    assert all(item["faces"] == [] for item in report["results"])


def test_detect_rejects_a_bad_model_with_a_clear_message(tmp_path: Path, mixed_folder: Path) -> None:
    result = runner.invoke(app, ["detect", str(mixed_folder), "--model", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 2 and "not found" in " ".join(result.output.split())


def test_live_stream_without_a_display_prints_json_lines(tiny_model: Path, tmp_path: Path) -> None:
    video = write_face_video(tmp_path / "stream.mp4", n_frames=30)
    arguments = ["detect", "--model", str(tiny_model), "--stream", str(video), "--no-window", "--max-frames", "3"]
    result = runner.invoke(app, [*arguments, "--faces", "none"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    assert all({"frame", "fps", "dropped", "fake_prob", "status"} <= set(line) for line in lines)
    # What live mode cannot honour is refused, not silently dropped (PATHs went unscored, reports unwritten).
    extra = [str(video), "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")]
    refused = runner.invoke(app, [*arguments, "--faces", "none", *extra])
    assert refused.exit_code == 2 and "takes no PATH, --json, --csv" in " ".join(refused.output.split())
    both = runner.invoke(app, [*arguments, "--camera", "0"])
    assert both.exit_code == 2 and "--camera or --stream, not both" in " ".join(both.output.split())


def test_detect_lets_idle_model_threads_sleep_unless_the_user_chose(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenMP's spinning threads took the decoding workers' cores; a user's OMP_WAIT_POLICY stays."""
    import os

    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (120, 90, 60)).save(image)
    arguments = ["detect", str(image), "--model", str(tiny_model), "--faces", "none"]
    for preset, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
        if preset:
            environment["OMP_WAIT_POLICY"] = preset
        monkeypatch.setattr(os, "environ", environment)  # the command's change stays inside this test
        result = runner.invoke(app, arguments)
        assert result.exit_code == 0, result.output
        assert os.environ["OMP_WAIT_POLICY"] == expected


@pytest.mark.parametrize(("threshold", "n_fake"), [(0.0, 21), (1.0, 0)])
def test_detect_counts_the_fakes_and_points_to_calibrate_when_many_are(
    tmp_path: Path, threshold: float, n_fake: int
) -> None:
    from PIL import Image

    from tests.inference.helpers import make_tiny_model

    model = make_tiny_model(tmp_path / f"t{threshold}.safetensors", threshold=threshold)
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(21):
        Image.new("RGB", (48, 48), (index * 10, 80, 120)).save(folder / f"{index}.png")
    result = runner.invoke(app, ["detect", str(folder), "--model", str(model), "--faces", "none"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"{n_fake} of 21 scored inputs called fake" in output
    assert ("dfkd calibrate FOLDER" in output) == (n_fake > 0)
