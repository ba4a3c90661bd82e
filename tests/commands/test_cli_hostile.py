"""Hostile command lines for `detect`, `scan` and `make-demo-data`: bad output paths, unreadable inputs, bad values.

Each case must end in one `error:` line (or a per-item error), never a traceback, and never lose the other work.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfkd.cli import app
from tests.conftest import make_tree
from tests.inference.helpers import make_tiny_model, noise_image

runner = CliRunner()


def flat(output: str) -> str:
    """The output with line breaks and wrapping indents gone (rich folds long paths at any character)."""
    return "".join(output.split())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.jpg"
    noise_image(0).save(path)
    return path


def detect(model: Path, *arguments: str) -> object:
    return runner.invoke(app, ["detect", *arguments, "--model", str(model), "--faces", "none"])


def deny(monkeypatch: pytest.MonkeyPatch, denied: Path, mode: int) -> None:
    """Make ``os.access(denied, mode)`` fail: chmod does not stop root, so the refusal is simulated there."""
    real_access = os.access

    def access(path: object, asked: int, *args: object, **kwargs: object) -> bool:
        if Path(os.fspath(path)) == denied and asked & mode:  # type: ignore[arg-type]
            return False
        return real_access(path, asked, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)


# 1. Output paths: checked before any work; a write that still fails is one line and the others are written.


@pytest.mark.parametrize(
    ("option", "target", "reason"),
    [
        ("--json", "outdir", "is a directory"),
        ("--csv", "good.jpg/x.csv", "{tmp}/good.jpg is not a folder"),
        ("--csv", "good.jpg/deeper/x.csv", "{tmp}/good.jpg is not a folder"),
        ("--explain", "good.jpg", "is not a folder"),
    ],
)
def test_detect_refuses_an_unwritable_output_before_loading_the_model(
    tmp_path: Path, good: Path, option: str, target: str, reason: str
) -> None:
    (tmp_path / "outdir").mkdir()
    other = ["--json", str(tmp_path / "r.json")] if option == "--csv" else ["--csv", str(tmp_path / "c1.csv")]
    missing_model = tmp_path / "nope.safetensors"  # were the model loaded first, this would be the error
    result = detect(missing_model, str(good), option, str(tmp_path / target), *other)
    assert result.exit_code == 2, result.output
    expected = f"error: {option} {tmp_path / target}: {reason.format(tmp=tmp_path)}"
    assert flat(expected) in flat(result.output)
    assert "Traceback" not in result.output and not Path(other[1]).exists()


def test_detect_refuses_an_output_in_a_folder_it_may_not_write(
    tmp_path: Path, good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    deny(monkeypatch, locked, os.W_OK)
    result = detect(tmp_path / "nope.safetensors", str(good), "--json", str(locked / "new" / "r.json"))
    assert result.exit_code == 2, result.output
    assert f"cannotwritein{locked}:permissiondenied" in flat(result.output)


def test_detect_writes_the_other_outputs_when_one_write_fails(
    tiny_model: Path, tmp_path: Path, good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dfkd.inference.report

    def disk_full(path: object, report: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(dfkd.inference.report, "write_report_json", disk_full)
    json_path, csv_path = tmp_path / "r.json", tmp_path / "c1.csv"
    result = detect(tiny_model, str(good), "--json", str(json_path), "--csv", str(csv_path))
    assert result.exit_code == 1, result.output
    assert f"error:--json{json_path}:cannotwrite(Nospaceleftondevice)" in flat(result.output)
    assert "Traceback" not in result.output
    rows = list(csv.DictReader(csv_path.open()))
    assert [(Path(row["input"]).name, row["status"]) for row in rows] == [("good.jpg", "ok")]


@pytest.mark.parametrize(
    ("out", "blocker", "verify", "reason"),
    [
        ("scan", "scan", False, "scan: is a directory"),
        ("good.jpg/m.csv", None, False, "good.jpg/m.csv: {tmp}/good.jpg is not a folder"),
        ("m.csv", "m.json", False, "m.csv: {tmp}/m.json, written beside the manifest, is a directory"),
        ("m.csv", "m.leakage.csv", True, "m.csv: {tmp}/m.leakage.csv, written beside the manifest, is a directory"),
        ("m.json", None, False, "m.json: a file written beside the manifest has this name"),
    ],
)
def test_scan_refuses_an_unwritable_out_before_scanning(
    tmp_path: Path, good: Path, out: str, blocker: str | None, verify: bool, reason: str
) -> None:
    if blocker:
        (tmp_path / blocker).mkdir()
    root = make_tree(tmp_path / "ds", {"real": 2, "fake": 2})
    arguments = ["scan", str(root), "--out", str(tmp_path / out), *(["--verify"] if verify else [])]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert flat(f"error: --out {tmp_path}/{reason.format(tmp=tmp_path)}") in flat(result.output)
    assert "Traceback" not in result.output and not (tmp_path / "m.csv").exists()


def test_scan_reports_a_failed_write_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dfkd.data.manifest

    def disk_full(path: object, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(dfkd.data.manifest, "write_json", disk_full)
    root = make_tree(tmp_path / "ds", {"real": 2, "fake": 2})
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 1, result.output
    assert f"error:{tmp_path}/m.json:Nospaceleftondevice" in flat(result.output)
    assert "Traceback" not in result.output


# 2. An unreadable input is one item's error; the run goes on.


def test_detect_reports_an_unreadable_file_and_scores_the_rest(
    tiny_model: Path, tmp_path: Path, good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked.jpg"
    noise_image(1).save(locked)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway
        deny(monkeypatch, locked, os.R_OK)
    json_path = tmp_path / "r.json"
    result = detect(tiny_model, str(locked), str(good), "--json", str(json_path))
    locked.chmod(0o644)
    assert result.exit_code == 0, result.output
    assert f"{locked}:cannotread:permissiondenied" in flat(result.output)
    statuses = {Path(item["input"]).name: item["status"] for item in json.loads(json_path.read_text())["results"]}
    assert statuses == {"locked.jpg": "error", "good.jpg": "ok"}


# 3. Option values are checked before anything runs (a missing model would otherwise be the error).


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--fps", "0", "--fps 0.0: must be a number of frames per second > 0"),
        ("--fps", "-1", "--fps -1.0: must be a number of frames per second > 0"),
        ("--fps", "nan", "--fps nan: must be a number of frames per second > 0"),
        ("--fps", "inf", "--fps inf: must be a number of frames per second > 0"),
        ("--max-frames", "0", "--max-frames 0: must be at least 1"),
        ("--max-frames", "-1", "--max-frames -1: must be at least 1"),
    ],
)
def test_detect_rejects_bad_fps_and_max_frames(tmp_path: Path, option: str, value: str, message: str) -> None:
    result = detect(tmp_path / "nope.safetensors", str(tmp_path / "clip.mp4"), option, value)
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in " ".join(result.output.split())


@pytest.mark.parametrize("ratios", ["nan,0.5,0.5", "a,b,c", "0.5,0.5", "inf,0,0", "-0.5,1,0.5", "1,1,1"])
def test_scan_checks_ratios_before_scanning(tmp_path: Path, ratios: str) -> None:
    missing_root = tmp_path / "nope"  # were the folders scanned first, this would be the error
    result = runner.invoke(app, ["scan", str(missing_root), "--out", str(tmp_path / "m.csv"), "--ratios", ratios])
    assert result.exit_code == 2, result.output
    expected = f"error: --ratios: expected three non-negative numbers that sum to 1, like 0.7,0.2,0.1, got '{ratios}'"
    assert expected in " ".join(result.output.split())


def test_make_demo_data_help_shows_the_minimums_and_the_default(tmp_path: Path) -> None:
    from dfkd.data.demo import DEMO_DEFAULT_PER_CLASS

    help_text = " ".join(runner.invoke(app, ["make-demo-data", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"Images per class (all splits), at least 10. [default: {DEMO_DEFAULT_PER_CLASS}]" in help_text
    assert "Image side in pixels, at least 32. [default: 256]" in help_text
    result = runner.invoke(app, ["make-demo-data", str(tmp_path / "demo"), "--per-class", "0"])
    assert result.exit_code == 2 and "per_class must be an integer >= 10, got 0" in result.output  # not the default


# 4. Folders: what is ignored is named, GIF and TIFF are scored, unreadable folders and link loops are reported.


def test_detect_folder_scores_gif_and_tiff_and_names_the_ignored_files(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    frames = [noise_image(seed) for seed in range(2)]
    frames[0].save(folder / "a.jpg")
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    for index in range(11):
        (folder / f"note{index:02d}.txt").write_text("not an image")
    (folder / "loopa").symlink_to("loopb")
    (folder / "loopb").symlink_to("loopa")
    json_path = tmp_path / "r.json"
    result = detect(tiny_model, str(folder), "--json", str(json_path))
    assert result.exit_code == 0, result.output
    statuses = {Path(item["input"]).name: item["status"] for item in json.loads(json_path.read_text())["results"]}
    assert statuses == {"a.jpg": "ok", "anim.gif": "ok", "pages.tif": "ok"}
    output = flat(result.output)
    assert "13otherfilesignored" in output
    ignored = sorted(["loopa", "loopb", *(f"note{index:02d}.txt" for index in range(11))])
    assert all(name in output for name in ignored[:10]) and "and3more" in output
    assert ignored[-1] not in output  # only the first ten are named


def test_detect_reports_an_unreadable_subfolder_as_an_error_item(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("open", "locked"):
        (tmp_path / "inputs" / name).mkdir(parents=True)
        noise_image(0).save(tmp_path / "inputs" / name / "a.jpg")
    real_scandir = os.scandir

    def refusing(path: object = ".") -> object:
        if Path(os.fspath(path)).name == "locked":  # type: ignore[arg-type]  # chmod 000 does not stop root
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))  # type: ignore[arg-type]
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", refusing)
    json_path, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
    result = detect(tiny_model, str(tmp_path / "inputs"), "--json", str(json_path), "--csv", str(csv_path))
    assert result.exit_code == 0, result.output
    report = json.loads(json_path.read_text())
    folder = [item for item in report["results"] if item["kind"] == "folder"]
    assert len(folder) == 1 and Path(folder[0]["input"]).name == "locked"
    assert folder[0]["status"] == "error" and folder[0]["error"] == "cannot read: permission denied"
    called_fake = sum(item["label"] == "fake" for item in report["results"])
    assert report["summary"] == {"n_inputs": 2, "ok": 1, "no_face": 0, "error": 1, "called_fake": called_fake}
    rows = {Path(row["input"]).name: row for row in csv.DictReader(csv_path.open())}
    assert rows["locked"]["kind"] == "folder" and rows["locked"]["error"] == "cannot read: permission denied"


def test_detect_says_a_symlink_loop_cannot_be_read(tiny_model: Path, tmp_path: Path, good: Path) -> None:
    (tmp_path / "loopa").symlink_to("loopb")
    (tmp_path / "loopb").symlink_to("loopa")
    result = detect(tiny_model, str(tmp_path / "loopa"), str(good))
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'loopa'}:cannotread:toomanylevelsofsymboliclinks" in flat(result.output)


def test_detect_says_a_link_to_nothing_is_broken_not_forbidden(tiny_model: Path, tmp_path: Path, good: Path) -> None:
    """A dangling link in a folder was reported as `cannot read: permission denied` (os.access fails for it too)."""
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / "gone.jpg").symlink_to(tmp_path / "nothing.jpg")
    (tmp_path / "gone2.jpg").symlink_to(tmp_path / "nothing.jpg")
    result = detect(tiny_model, str(folder), str(tmp_path / "gone2.jpg"), str(good))
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "gone.jpg:brokenlink:itstargetdoesnotexist" in output and "gone2.jpg:brokenlink" in output
    assert "permissiondenied" not in output


# 5. -q silences the note about the bundled model.


def test_quiet_silences_the_bundled_model_note(tiny_model: Path, good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dfkd.pretrained

    monkeypatch.setattr(dfkd.pretrained, "default_model_path", lambda: tiny_model)
    arguments = ["detect", str(good), "--faces", "none"]
    loud, quiet = runner.invoke(app, arguments), runner.invoke(app, ["-q", *arguments])
    assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
    assert "no--modelgiven" in flat(loud.output) and "no--modelgiven" not in flat(quiet.output)


def test_detect_prints_names_that_look_like_markup_as_text(tiny_model: Path, tmp_path: Path) -> None:
    """`x[/y].jpg` once stopped the run at the results table (a rich markup error), before any report was written."""
    folder = tmp_path / "x["
    folder.mkdir()
    noise_image(0).save(folder / "y].jpg")
    noise_image(1).save(folder / "[red]z.jpg")
    (folder / "[bold]bad.jpg").write_bytes(b"not an image")
    json_path, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
    result = detect(tiny_model, str(folder), "--json", str(json_path), "--csv", str(csv_path))
    assert result.exit_code == 0, result.output
    statuses = {Path(item["input"]).name: item["status"] for item in json.loads(json_path.read_text())["results"]}
    assert statuses == {"y].jpg": "ok", "[red]z.jpg": "ok", "[bold]bad.jpg": "error"}
    assert csv_path.exists()
    output = flat(result.output)
    assert "x[/y].jpg" in output and "[red]z.jpg" in output and "[bold]bad.jpg" in output
