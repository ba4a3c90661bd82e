"""A built wheel holds the YAML presets, and an installed copy finds them from any folder (no source tree needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_CONFIGS = ROOT / "src" / "dfkd" / "configs"

# Run inside the installed copy, from a folder outside the source tree: every demo preset resolves and validates.
PROBE = """
import json, sys
import dfkd, dfkd.experiments.demo
from dfkd.config import load_config
from dfkd.configs import list_configs, resolve_config

folder = dfkd.experiments.demo.find_configs_dir()
demo_files = ["demo_teacher.yaml", *sorted({config for _, config in dfkd.experiments.demo.STUDENT_RUNS})]
for name in demo_files:
    load_config(folder / name, ["data.manifest=m.csv"])
print(json.dumps({
    "package": dfkd.__file__,
    "folder": str(folder),
    "demo_files": demo_files,
    "names": list_configs(),
    "by_name": str(resolve_config("demo_teacher")),
    "by_docs_path": str(resolve_config("configs/seed_sweep.yaml")),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the project (the shared checkout gets no build/ or egg-info litter)."""
    pytest.importorskip("setuptools")
    work = tmp_path_factory.mktemp("build")
    project = work / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = work / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(project)]
    result = subprocess.run(
        [*command, "-w", str(dist)], capture_output=True, text=True, timeout=240, check=False, cwd=work
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = dist.glob("dfkd-*.whl")
    return built


def test_wheel_contains_every_config_preset(wheel: Path) -> None:
    presets = sorted(path.name for path in SOURCE_CONFIGS.glob("*.yaml"))
    assert "demo_teacher.yaml" in presets
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"dfkd/configs/{name}" for name in presets} <= names
    assert "dfkd/configs/__init__.py" in names


def test_installed_copy_finds_the_demo_configs_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel unpacked is an installed copy
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "DFKD_CONFIGS"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).resolve().is_relative_to(site.resolve())
    assert Path(found["folder"]).resolve() == (site / "dfkd" / "configs").resolve()
    assert set(found["names"]) == {path.stem for path in SOURCE_CONFIGS.glob("*.yaml")}
    assert Path(found["by_name"]).resolve() == (site / "dfkd" / "configs" / "demo_teacher.yaml").resolve()
    assert Path(found["by_docs_path"]).resolve() == (site / "dfkd" / "configs" / "seed_sweep.yaml").resolve()


def test_unknown_config_name_lists_the_presets() -> None:
    from dfkd.configs import resolve_config

    with pytest.raises(FileNotFoundError, match="demo_teacher"):
        resolve_config("no_such_preset")
