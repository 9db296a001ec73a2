"""``drctl demo``: the whole main job with no configuration, in a folder; it stops every
process it started, and runs again in the same folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.drctl_env import DRCTL


def orthancs_in(folder: Path) -> list[int]:
    """PIDs of Orthanc processes whose configuration lives under ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if "Orthanc" in cmdline and str(folder) in cmdline:
            found.append(int(proc.name))
    return found


def demo(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DRCTL_CONFIG"}
    return subprocess.run(
        [DRCTL, *extra, "demo", "--dir", str(folder), "--studies", "6"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=folder.parent,
    )


def test_demo_runs_twice_without_config_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "demo-out"
    first = demo(folder, "--json")
    assert "Traceback" not in first.stderr
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["state"] == "passed" and doc["studies"] == 6
    assert doc["drill"]["studies_verified"] == 6
    assert Path(doc["report"]).is_file() and Path(doc["report"]).is_relative_to(folder)
    assert orthancs_in(folder) == []
    assert not any((folder / "sandbox").iterdir())
    assert (Path(doc["config"]).stat().st_mode & 0o077) == 0

    second = demo(folder)
    assert second.returncode == 0, second.stderr
    assert "drill passed" in second.stdout and "report:" in second.stdout
    assert orthancs_in(folder) == []
    reports = list((folder / "reports").glob("*.html"))
    assert len(reports) == 1  # the folder started afresh


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("do not delete\n")
    result = demo(folder)
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (folder / "thesis.txt").exists()
