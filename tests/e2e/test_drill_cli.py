"""``drctl drill run|list|show`` as an admin runs them: JSON shapes, exit codes (0 passed,
1 findings, 2 usage, 3 could not start, 130 interrupted), every drill recorded with why,
the sandbox removed on Ctrl-C, and the evidence surviving a lost catalog."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.drctl_env import DRCTL
from tests.support.drills import DRILL_JSON_KEYS, BackedUp, backed_up_primary, copy_env

CLI_KEYS = set(DRILL_JSON_KEYS)


@pytest.fixture(scope="session")
def primary(tmp_path_factory) -> BackedUp:
    with backed_up_primary(tmp_path_factory.mktemp("drill-cli"), studies=8) as backed:
        yield backed


@pytest.fixture(scope="session")
def passed(primary: BackedUp) -> dict:
    return primary.env.cli_json("drill", "run")


def test_run_list_and_show(primary: BackedUp, passed: dict) -> None:
    assert CLI_KEYS <= set(passed)
    assert passed["state"] == "passed" and passed["standby"] == "sandbox"
    assert all(set(f) >= {"kind", "study_uid", "detail"} for f in passed["findings"])
    listed = primary.env.cli_json("drill", "list")
    assert isinstance(listed, list)
    assert {"drill_id", "state", "snapshot_id", "findings", "rto_s", "rpo_s"} <= set(listed[0])
    shown = primary.env.cli_json("drill", "show", str(passed["drill_id"]))
    assert CLI_KEYS <= set(shown)
    assert shown["report"] == passed["report"]
    snapshots = primary.env.cli_json("snapshots", "list")
    assert snapshots[-1]["verified"] is True
    human = primary.env.cli(
        "drill", "show", str(passed["drill_id"]), json_output=False, check_exit=0
    ).stdout
    assert "passed" in human and "report:" in human


def test_report_path_option_and_a_target_finding(
    primary: BackedUp, passed: dict, tmp_path: Path
) -> None:
    """An RTO target nobody can meet: the drill runs to the end and fails with exit 1."""
    primary.env.doc["drill"]["max_rto"] = "1ms"
    primary.env.write()
    try:
        target = tmp_path / "evidence" / "drill.html"
        result = primary.env.cli("drill", "run", "--report", str(target), check_exit=1)
    finally:
        del primary.env.doc["drill"]["max_rto"]
        primary.env.write()
    doc = json.loads(result.stdout)
    assert doc["state"] == "failed"
    assert [f["kind"] for f in doc["findings"]] == ["rto_exceeded"]
    assert doc["report"] == str(target) and target.is_file()
    assert json.loads(target.with_suffix(".json").read_text())["state"] == "failed"
    assert doc["studies_verified"] == doc["studies_expected"]  # the data was fine
    snapshots = primary.env.cli_json("snapshots", "list")
    assert snapshots[-1]["verified"] is True  # from the earlier passed drill only


@pytest.mark.parametrize(
    "args",
    [
        ("drill", "run", "--sandbox", "--standby", "primary"),
        ("drill", "run", "--snapshot", "feedbeef"),
        ("drill", "run", "--node", "nosuch"),
        ("drill", "run", "--standby", "primary"),
        ("drill", "show", "9999"),
    ],
)
def test_usage_errors_exit_2(primary: BackedUp, args) -> None:
    result = primary.env.cli(*args, check_exit=2)
    assert result.stdout == ""
    assert result.stderr.startswith("drctl: error:")


def test_a_standby_is_never_restored_partially(primary: BackedUp, tmp_path: Path) -> None:
    primary.add_node(
        "idle",
        {
            "kind": "orthanc",
            "role": "standby",
            "primary": "primary",
            "aet": "IDLE",
            "storage": str(tmp_path / "storage"),
            "index": f"sqlite:{tmp_path / 'storage' / 'index'}",
            "start": ["true"],
            "stop": ["true"],
        },
    )
    result = primary.env.cli("drill", "run", "--standby", "idle", "--partial", check_exit=2)
    assert "restored in full" in result.stderr


def test_a_drill_without_its_snapshot_is_recorded_as_aborted(primary: BackedUp) -> None:
    primary.env.cli("drill", "run", "--snapshot", "feedbeef", check_exit=2)
    latest = primary.env.cli_json("drill", "list")[0]
    assert latest["state"] == "aborted" and latest["snapshot_id"] is None
    assert "feedbeef" in latest["reason"]


def test_unreachable_repository_exits_3_and_is_recorded(primary: BackedUp) -> None:
    repo = primary.root / "repo"
    repo.rename(repo.with_name("repo.away"))
    try:
        result = primary.env.cli("drill", "run", check_exit=3)
    finally:
        repo.with_name("repo.away").rename(repo)
    assert "repository local" in result.stderr
    latest = primary.env.cli_json("drill", "list")[0]
    assert latest["state"] == "aborted"
    assert "could not start" in latest["reason"]


def test_ctrl_c_removes_the_sandbox_and_records_the_drill(primary: BackedUp) -> None:
    sandbox = primary.root / "sandbox"
    env = {**os.environ, **primary.env.env}
    proc = subprocess.Popen(
        [DRCTL, "--config", str(primary.env.config_path), "--json", "drill", "run", "--verify-all"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    orthanc = None
    deadline = time.monotonic() + 120
    while orthanc is None and time.monotonic() < deadline and proc.poll() is None:
        for owner in sandbox.glob("*/drctl-sandbox.json"):
            try:
                orthanc = json.loads(owner.read_text()).get("orthanc_pid")
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    assert orthanc, "the sandbox never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert not any(sandbox.iterdir())
    assert not Path(f"/proc/{orthanc}").exists() or "Orthanc" not in Path(
        f"/proc/{orthanc}/cmdline"
    ).read_text(errors="replace")
    latest = primary.env.cli_json("drill", "list")[0]
    assert latest["state"] == "interrupted"


def test_catalog_rebuild_restores_drills_and_verified_marks(
    primary: BackedUp, passed: dict, tmp_path: Path
) -> None:
    env = copy_env(primary, tmp_path / "lost")
    (env.root / "state" / "catalog.db").unlink()
    env.cli("catalog", "rebuild", check_exit=0)
    assert env.cli_json("snapshots", "list")[-1]["verified"] is True
    drills = env.cli_json("drill", "list")
    rebuilt = [
        d for d in drills if d["snapshot_id"] == passed["snapshot_id"] and d["state"] == "passed"
    ]
    assert rebuilt and rebuilt[0]["studies_verified"] == passed["studies_verified"]
