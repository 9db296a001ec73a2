"""Streaming replication: drctl measures a real PostgreSQL replica's lag, bytes first.

The pair comes from :mod:`tests.support.pgcluster` (a throwaway primary and a
``pg_basebackup -R`` replica applying WAL with a fixed delay). Busy primary: a writer loop
keeps WAL coming, so drctl must see bytes behind and a time lag close to the apply delay.
Idle primary: the replay timestamp goes stale while nothing is behind; drctl must report
lag 0 and no breach although "now minus replay time" exceeds ``drill.max_rpo``.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from drctl.actions.replicate import run_replicate
from drctl.catalog.models import Replication, Snapshot
from drctl.net import free_port
from tests.support.drctl_env import make_env
from tests.support.pgcluster import APPLY_DELAY_S, PgCluster, pg_cluster  # noqa: F401

MAX_RPO_S = 4.0
IDLE_S = MAX_RPO_S + 1.5
LSN = re.compile(r"^[0-9A-F]+/[0-9A-F]+$")


class Writer(threading.Thread):
    """Keeps the primary busy: small batches of inserts until stopped."""

    def __init__(self, cluster: PgCluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stopped = threading.Event()
        self.batches = 0

    def run(self) -> None:
        with self.cluster.connect(self.cluster.primary_port) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS busy (id bigserial, payload text)")
            while not self.stopped.is_set():
                conn.execute(
                    "INSERT INTO busy (payload) "
                    "SELECT repeat('x', 200) FROM generate_series(1, 200)"
                )
                self.batches += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


@pytest.fixture(scope="module")
def env(pg_cluster, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("replicate-streaming")
    dead_rest = f"http://127.0.0.1:{free_port()}"  # no Orthanc runs on the test clusters
    nodes = {
        "pgprimary": {
            "aet": "PGPRIMARY",
            "port": free_port(),
            "rest": dead_rest,
            "storage": str(root / "primary-storage"),
            "index": pg_cluster.url(pg_cluster.primary_port),
            "index_copy": "online",
        },
        "replica": {
            "role": "standby",
            "primary": "pgprimary",
            "replication": "streaming",
            "aet": "REPLICA",
            "port": free_port(),
            "rest": dead_rest,
            "storage": str(root / "replica-storage"),
            "index": pg_cluster.url(pg_cluster.replica_port),
        },
    }
    return make_env(
        root / "drctl",
        repositories={"local": {"url": str(root / "repo")}},
        nodes=nodes,
        drill={"max_rpo": f"{MAX_RPO_S:.0f}s"},
    )


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def _replications(ctx) -> list[Replication]:
    with ctx.catalog.session() as s:
        return list(
            s.scalars(
                select(Replication).where(Replication.standby == "replica").order_by(Replication.id)
            )
        )


def test_lag_while_the_primary_is_busy(env, pg_cluster):  # noqa: F811
    ctx = env.context()
    writer = Writer(pg_cluster)
    writer.start()
    try:
        _wait(lambda: writer.batches >= 20, 20, "the writer did not get going")
        time.sleep(APPLY_DELAY_S)
        busy = run_replicate(ctx, "replica")
    finally:
        writer.stop()
    assert busy.state == "succeeded", busy.reason
    assert busy.lag_bytes > 0, busy.details
    # the replica applies WAL APPLY_DELAY_S late: the measured lag is of that size
    assert 0.5 * APPLY_DELAY_S <= busy.lag_s <= 10 * APPLY_DELAY_S, busy.details
    row = _replications(ctx)[-1]
    assert row.mode == "streaming" and row.source == "pgprimary"
    assert row.lag_bytes == busy.lag_bytes and row.lag_s == pytest.approx(busy.lag_s)
    assert LSN.match(row.position), row.position
    assert row.run_id == busy.run_id


def test_idle_primary_is_not_a_false_breach(env, pg_cluster):  # noqa: F811
    ctx = env.context()
    _wait(pg_cluster.replay_caught_up, 30, "the replica did not catch up")
    with pg_cluster.connect(pg_cluster.replica_port) as conn:
        _wait(
            lambda: (
                (
                    datetime.now(UTC)
                    - conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]
                ).total_seconds()
                > IDLE_S
            ),
            IDLE_S + 10,
            "replay timestamp",
        )
    idle = run_replicate(ctx, "replica")
    assert idle.state == "succeeded", idle.reason
    assert (idle.lag_bytes, idle.lag_s) == (0, 0.0), idle.details
    assert idle.details["lag"]["method"] == "lsn"
    # the trap was real: "now minus replay time" is past max_rpo
    stale = datetime.now(UTC) - datetime.fromisoformat(idle.details["lag"]["replay_time"])
    assert stale.total_seconds() > MAX_RPO_S

    with ctx.catalog.session() as s:  # a fresh storage snapshot: the images are current
        s.add(
            Snapshot(
                repository="local",
                snapshot_id="5" * 64,
                short_id="55555555",
                site=ctx.site,
                node="pgprimary",
                seq=1,
                time=datetime.now(UTC),
                status="complete",
            )
        )
    status = env.cli_json("replicate", "status", expect=None)
    [replica] = status
    assert (replica["lag_bytes"], replica["lag_s"]) == (0, 0.0), replica
    assert replica["rpo_s"] < MAX_RPO_S and replica["ok"], replica
    assert replica["image_age_s"] is not None and replica["index_age_s"] == 0.0
