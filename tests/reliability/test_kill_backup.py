"""``drctl backup run`` killed with SIGKILL at chosen points: during the index copy
(``pg_dump`` held), during the restic upload (drctl and restic killed together, a power
cut: restic's lock and half-written packs stay behind), and during the manifest write (the
storage snapshot is in the repository, nothing in the catalog yet). Afterwards the next
command marks the run ``interrupted``, the next backup succeeds, ``restic check`` is
clean, and the catalog never lists a snapshot restic does not have.

Also: two backups of one node at once (the second refuses clearly), and a SQLite node
killed while drctl had it stopped for a stop-start index copy (it comes back).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from drctl.net import port_open
from tests.reliability import faults
from tests.support.scenarios import env_for, primary, raw_restic

pytestmark = pytest.mark.xdist_group("reliability-kill")  # one primary per worker run


@pytest.fixture(scope="module")
def pg_primary(tmp_path_factory):
    with primary(tmp_path_factory.mktemp("kill-primary"), studies=6) as (node, archive):
        yield node, archive


@pytest.fixture(scope="module")
def site(pg_primary, tmp_path_factory):
    """One drctl installation and local repository for the whole module: every kill
    leaves its debris for the next one to survive."""
    node, _ = pg_primary
    root = tmp_path_factory.mktemp("kill-site")
    env = env_for(root, node, {"url": str(root / "repo")})
    env.cli_json("repo", "init")
    first = env.cli_json("backup", "run")
    assert first["state"] == "succeeded"
    return env


def restic_check(env) -> subprocess.CompletedProcess:
    try:
        return raw_restic(env, "check")
    except subprocess.CalledProcessError as exc:
        return subprocess.CompletedProcess(exc.cmd, exc.returncode, exc.stdout, exc.stderr)


def _after_the_kill(env, before: set[str]) -> None:
    """What must hold once a killed backup is gone."""
    listing = faults.verified_listing(env)  # also reaps the dead run
    killed = [r for r in faults.runs(env) if r["kind"] == "backup"][-1]
    assert killed["state"] == "interrupted", killed
    assert "process is gone" in killed["reason"]
    assert not [r for r in faults.runs(env) if r["state"] == "running"]
    assert {row["snapshot_id"] for row in listing} == before  # nothing half-recorded
    result = env.cli_json("backup", "run")
    assert result["state"] == "succeeded", result
    faults.verified_listing(env)
    check = restic_check(env)
    assert check.returncode == 0 and "no errors were found" in check.stdout, (
        check.stdout + check.stderr
    )
    locks = raw_restic(env, "list", "locks", "--no-lock").stdout.split()
    assert locks == []


@pytest.mark.parametrize("point", ["index", "upload", "manifest"])
def test_sigkill_mid_backup_leaves_nothing_half_done(site, point, tmp_path):
    env = site
    before = faults.catalog_snapshot_ids(env)
    fault = faults.fault_env(tmp_path / "bin", point)
    marker = Path(fault["FAULT_MARKER"])
    proc = faults.spawn(env, "backup", "run", extra_env=fault)
    faults.wait_for(marker.exists, proc, what=f"the {point} point")
    held = int(marker.read_text())
    if point == "upload":
        # a power cut: drctl and the uploading restic die at once
        faults.sigkill(proc.pid, held)
    else:
        faults.sigkill(proc.pid)
    faults.finish(proc)
    if point == "manifest":
        # the storage snapshot reached the repository; the catalog must not list it
        raw = {
            s["id"]
            for s in json.loads(raw_restic(env, "snapshots", "--json").stdout)
            if "kind:storage" in s.get("tags", [])
        }
        assert raw - before, "the storage snapshot was not written before the kill"
    if point == "upload":
        assert raw_restic(env, "list", "locks", "--no-lock").stdout.split(), "no lock left"
    faults.sigkill(held)  # the held wrapper, if the parent-death signal did not end it
    _after_the_kill(env, before)


def test_two_backups_of_one_node_the_second_refuses(site, tmp_path):
    env = site
    fault = faults.fault_env(tmp_path / "bin", "hold")
    proc = faults.spawn(env, "backup", "run", extra_env=fault)
    try:
        faults.wait_for(Path(fault["FAULT_MARKER"]).exists, proc, what="the first backup")
        started = time.monotonic()
        second = env.cli("backup", "run", check_exit=3)
        assert time.monotonic() - started < 15
        errors = [ln for ln in second.stderr.splitlines() if ln.startswith("drctl: error:")]
        assert len(errors) == 1, second.stderr
        assert "backup of node primary is already running" in errors[0]
        assert second.stdout == ""
    finally:
        Path(fault["FAULT_RELEASE"]).touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["state"] == "succeeded"
    assert [r["state"] for r in faults.runs(env) if r["state"] == "running"] == []


def test_sigkill_while_the_node_is_stopped_for_its_index_copy(tmp_path):
    """A stop-start copy stops the PACS; drctl dying then must not leave it down."""
    with primary(tmp_path / "p", studies=2, postgres=False) as (node, _):
        slow_stop = faults.install(tmp_path / "bin", "slow-stop", faults.SLOW_STOP)
        env = env_for(
            tmp_path,
            node,
            {"url": str(tmp_path / "repo")},
            node={"stop": [str(slow_stop), *node.stop_argv()]},
        )
        env.cli_json("repo", "init")
        marker = tmp_path / "stopped"
        proc = faults.spawn(env, "backup", "run", extra_env={"FAULT_MARKER": str(marker)})
        faults.wait_for(marker.exists, proc, what="the node's stop")
        assert not port_open("127.0.0.1", node.spec.dicom_port, timeout=0.5)
        faults.sigkill(proc.pid)
        faults.finish(proc)
        faults.sigkill(int(marker.read_text()))
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", node.spec.dicom_port, timeout=0.5):
            assert time.monotonic() < deadline, "the node stayed down after drctl died"
            time.sleep(0.2)
        node.rest.system()
        env.cli_json("snapshots", "list")
        assert [r["state"] for r in faults.runs(env)] == ["succeeded", "interrupted"]
