"""Issue 2 acceptance: `drctl backup run` to S3 as a user runs it: the JSON of cli.md, the
snapshot visible to drctl and to restic, incremental parents, clear exit codes, and no
secret in any process's argv, the catalog or the logs."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.drctl_env import DRCTL, RESTIC_PASSWORD
from tests.support.s3 import S3_KEY_ID, S3_SECRET
from tests.support.scenarios import env_for, primary, raw_restic, s3_repository

BACKUP_KEYS = {"run_id", "snapshot_id", "node", "repository", "files_new", "bytes_added",
               "studies", "instances", "duration_s", "state"}
SNAPSHOT_KEYS = {"snapshot_id", "time", "node", "repository", "studies", "instances", "bytes"}


@pytest.fixture(scope="module")
def pg_primary(tmp_path_factory):
    with primary(tmp_path_factory.mktemp("pg-primary"), studies=5) as (node, archive):
        yield node, archive


def test_backup_to_s3_json_listing_and_incremental_parent(pg_primary, moto_s3, tmp_path):
    node, archive = pg_primary
    env = env_for(tmp_path, node, s3_repository(moto_s3, moto_s3.bucket()))
    env.cli_json("repo", "init")
    first = env.cli_json("backup", "run")
    assert BACKUP_KEYS <= set(first)
    assert first["state"] == "succeeded" and first["node"] == "primary"
    assert first["repository"] == "offsite" and first["files_new"] > 0
    assert first["studies"] == 5 and first["instances"] == 20
    listed = env.cli_json("snapshots", "list")
    assert [s["snapshot_id"] for s in listed] == [first["snapshot_id"]]
    assert SNAPSHOT_KEYS <= set(listed[0])
    raw = json.loads(raw_restic(env, "snapshots", "--json").stdout)
    assert first["snapshot_id"] in {s["id"] for s in raw}

    second = env.cli_json("backup", "run")
    assert second["files_new"] == 0 and second["bytes_added"] < first["bytes_added"]
    raw = {s["id"]: s for s in json.loads(raw_restic(env, "snapshots", "--json").stdout)}
    assert raw[second["snapshot_id"]]["parent"] == first["snapshot_id"]


def test_no_secret_in_argv_catalog_or_logs(pg_primary, moto_s3, tmp_path):
    node, _ = pg_primary
    env = env_for(tmp_path, node, s3_repository(moto_s3, moto_s3.bucket()))
    env.cli_json("repo", "init")
    secrets = [RESTIC_PASSWORD, S3_KEY_ID, S3_SECRET]
    seen: list[str] = []
    done = threading.Event()

    def watch_argv():
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.append(cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
                except OSError:
                    pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_argv)
    watcher.start()
    try:
        proc = env.cli("-vv", "backup", "run", check_exit=0)
    finally:
        done.set()
        watcher.join()
    assert any("restic" in argv and "backup" in argv for argv in seen), "restic never seen"
    for secret in secrets:
        assert not any(secret in argv for argv in seen)
        assert secret not in proc.stdout and secret not in proc.stderr
    catalog = (env.root / "state" / "catalog.db").read_bytes()
    for secret in secrets:
        assert secret.encode() not in catalog
    check = env.cli("config", "check", check_exit=0)
    assert not any(secret in check.stdout for secret in secrets)


def test_wrong_password_is_exit_3_with_one_clear_line(pg_primary, moto_s3, tmp_path):
    node, _ = pg_primary
    env = env_for(tmp_path, node, s3_repository(moto_s3, moto_s3.bucket()))
    env.cli_json("repo", "init")
    (env.root / "secrets" / "restic.pass").write_text("not the password\n")
    proc = env.cli("backup", "run", check_exit=3)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("drctl: error:")]
    assert len(errors) == 1
    assert "repository offsite" in errors[0] and "wrong password" in errors[0]
    assert proc.stdout == ""


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_unreachable_s3_is_exit_3_within_the_timeout(pg_primary, tmp_path):
    node, _ = pg_primary
    repo = {"url": f"s3:http://127.0.0.1:{_closed_port()}/bucket/repo",
            "aws_access_key_id": "env:DRCTL_TEST_S3_KEY",
            "aws_secret_access_key": "env:DRCTL_TEST_S3_SECRET"}
    env = env_for(tmp_path, node, repo, controller={"timeouts": {"repository": "5s"}})
    start = time.monotonic()
    proc = env.cli("backup", "run", check_exit=3)
    assert time.monotonic() - start < 30
    assert "repository offsite" in proc.stderr and "unreachable" in proc.stderr
    runs = env.cli_json("snapshots", "list")
    assert runs == []


def test_broken_config_is_exit_2_naming_the_key(tmp_path):
    cfg = tmp_path / "drctl.toml"
    cfg.write_text('[controller]\nsite = "s"\n[repository.r]\nurl = "/tmp/r"\npassword = "env:X"\n'
                   '[node.n]\naet = "A"\nstorage = "/s"\nindex = "mysql://x"\nport = 70000\n')
    proc = subprocess.run([DRCTL, "--config", str(cfg), "backup", "run"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "node.n.index" in proc.stderr and "node.n.port" in proc.stderr
    assert str(cfg) in proc.stderr
