"""What drctl's dependencies do to a running backup when they go away: the S3 endpoint
killed (or frozen) during the upload, the PostgreSQL catalog lost in the middle of a run
or absent from the start. Exit 3 (or a failed run) with the reason, within the timeouts,
and nothing recorded as good that is not."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.reliability import faults
from tests.reliability.proxy import TcpProxy
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, create_database, drop_database
from tests.support.s3 import MotoServer
from tests.support.scenarios import env_for, primary, s3_repository

pytestmark = pytest.mark.xdist_group("reliability-outages")  # one primary per worker run

RESTIC_IDLE_S = 8
STOP_GRACE_S = 30  # drctl gives restic this long to stop on SIGINT


@pytest.fixture(scope="module")
def pg_primary(tmp_path_factory):
    with primary(tmp_path_factory.mktemp("outage-primary"), studies=6) as (node, archive):
        yield node, archive


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("drctl: error:")]


# --- object storage --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["killed"])  # "frozen" (SIGSTOP) behaves alike
def test_s3_endpoint_lost_mid_upload(pg_primary, tmp_path, how):
    node, _ = pg_primary
    moto = MotoServer(tmp_path)  # a dedicated endpoint: this test takes it down
    try:
        env = env_for(
            tmp_path,
            node,
            s3_repository(moto, moto.bucket()),
            controller={
                "timeouts": {
                    "repository": "10s",
                    "lock_wait": "30s",
                    "restic_idle": f"{RESTIC_IDLE_S}s",
                }
            },
        )
        env.cli_json("repo", "init")
        fault = faults.fault_env(tmp_path / "bin", "upload")
        proc = faults.spawn(env, "backup", "run", extra_env=fault)
        faults.wait_for(Path(fault["FAULT_MARKER"]).exists, proc, what="the upload")
        lost_at = time.monotonic()
        if how == "killed":
            moto.popen.kill()
        else:
            os.kill(moto.popen.pid, signal.SIGSTOP)
        out, err = proc.communicate(timeout=RESTIC_IDLE_S + STOP_GRACE_S + 60)
        took = time.monotonic() - lost_at
        stderr = err.decode()
        assert "Traceback" not in stderr
        assert proc.returncode == 3, (proc.returncode, out.decode(), stderr)
        [error] = _errors(stderr)
        assert "repository offsite" in error
        assert "unreachable" in error or "stalled" in error or "no progress" in error, error
        assert took < RESTIC_IDLE_S + STOP_GRACE_S + 15, took
        print(f"S3 endpoint {how} mid-upload: drctl exited 3 after {took:.1f}s: {error}")
        # nothing recorded as good: no snapshot in the catalog, the run failed with why
        listing = env.cli_json("snapshots", "list")
        assert listing == []
        [run] = [r for r in faults.runs(env) if r["kind"] == "backup"]
        assert run["state"] == "failed" and "repository offsite" in run["reason"], run
    finally:
        if moto.popen.poll() is None:
            os.kill(moto.popen.pid, signal.SIGCONT)
        moto.stop()


# --- the catalog database ----------------------------------------------------------------


@pytest.fixture
def pg_catalog():
    name = create_database("drctl_catalog")
    proxy = TcpProxy(PG_PORT)
    try:
        yield name, proxy
    finally:
        proxy.cut()
        drop_database(name)


def _catalog_rows(database: str) -> dict:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in (
                "snapshots",
                "index_copies",
                "manifest_studies",
                "manifest_instances",
                "records",
                "findings",
                "alarms",
            )
        }
        counts["runs"] = conn.execute("SELECT kind, state, reason FROM runs ORDER BY id").fetchall()
        return counts


def test_catalog_database_lost_mid_backup(pg_primary, pg_catalog, tmp_path):
    node, _ = pg_primary
    database, proxy = pg_catalog
    password = "catalog-password-never-shown-3f9"
    secret = tmp_path / "catalog.pass"
    secret.write_text(password)
    secret.chmod(0o600)
    env = env_for(
        tmp_path,
        node,
        {"url": str(tmp_path / "repo")},
        controller={
            "catalog": f"postgresql://{PG_USER}@127.0.0.1:{proxy.port}/{database}",
            "catalog_password": f"file:{secret}",
        },
    )
    env.cli_json("repo", "init")
    assert env.cli_json("backup", "run")["state"] == "succeeded"
    before = _catalog_rows(database)

    # the database goes away while restic uploads
    fault = faults.fault_env(tmp_path / "bin", "hold")
    proc = faults.spawn(env, "backup", "run", extra_env=fault)
    faults.wait_for(Path(fault["FAULT_MARKER"]).exists, proc, what="the upload")
    proxy.cut()
    lost_at = time.monotonic()
    Path(fault["FAULT_RELEASE"]).touch()
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - lost_at
    stderr = err.decode()
    assert "Traceback" not in stderr
    assert proc.returncode == 3, (proc.returncode, out.decode(), stderr)
    assert out == b""
    [error] = _errors(stderr)
    assert "catalog database" in error and f"{proxy.port}/{database}" in error, error
    assert "nothing half-written" in error
    assert password not in stderr
    print(f"catalog lost mid-backup: exit 3 {took:.1f}s after the database went away")

    # the database is back: the run is not left running, nothing of it was kept
    proxy.restore()
    listing = faults.verified_listing(env)
    assert len(listing) == 1
    after = _catalog_rows(database)
    assert {k: v for k, v in after.items() if k != "runs"} == {
        k: v for k, v in before.items() if k != "runs"
    }
    assert [r[1] for r in after["runs"] if r[0] == "backup"] == ["succeeded", "interrupted"]
    assert env.cli_json("backup", "run")["state"] == "succeeded"
    faults.verified_listing(env)


def test_catalog_database_down_from_the_start(pg_primary, pg_catalog, tmp_path):
    node, _ = pg_primary
    database, proxy = pg_catalog
    proxy.cut()
    env = env_for(
        tmp_path,
        node,
        {"url": str(tmp_path / "repo")},
        controller={"catalog": f"postgresql://{PG_USER}@127.0.0.1:{proxy.port}/{database}"},
    )
    started = time.monotonic()
    proc = env.cli("backup", "run", check_exit=3)
    assert time.monotonic() - started < 15
    [error] = _errors(proc.stderr)
    assert "catalog database" in error and "unreachable" in error and "refused" in error, error
    assert proc.stdout == ""
    assert not (tmp_path / "repo").exists()  # nothing was started
