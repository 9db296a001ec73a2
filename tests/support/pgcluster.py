"""A throwaway PostgreSQL 15 primary and its streaming replica, for the whole session.

The machine's PostgreSQL (127.0.0.1:5432) is never reconfigured: two clusters are created
with ``initdb`` in a private folder under /tmp (owned by the ``postgres`` OS user: the
server refuses to run as root and pytest's own temp folders are closed to other users),
started with ``pg_ctl`` on free loopback ports, and the replica is made with
``pg_basebackup -R``. The replica applies WAL with a fixed delay
(``recovery_min_apply_delay``), so a busy primary shows a real, predictable lag while an
idle one shows none. Every wait is bounded; both clusters are stopped and the folder removed
at the end of the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from drctl import execute
from drctl.net import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
DATABASE = "orthanc"
APPLY_DELAY_S = 1.0
WAIT_S = 60.0


@dataclass(frozen=True)
class PgCluster:
    """The running pair: ``primary_port`` and ``replica_port`` on 127.0.0.1, user postgres,
    trust authentication, database :data:`DATABASE` on both."""

    root: Path
    primary_port: int
    replica_port: int
    user: str = "postgres"
    database: str = DATABASE

    def url(self, port: int) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{port}/{self.database}"

    def connect(self, port: int, *, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=self.user,
            dbname=self.database,
            autocommit=autocommit,
            connect_timeout=5,
        )

    def replay_caught_up(self) -> bool:
        """True when the replica has replayed everything the primary has written."""
        with self.connect(self.primary_port) as p, self.connect(self.replica_port) as r:
            current = p.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            replay = r.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
            return p.execute(
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn) <= 0", (current, replay)
            ).fetchone()[0]


def _as_postgres(*argv: str | Path) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *(str(a) for a in argv)]


def _run(root: Path, *argv: str | Path, timeout: float = WAIT_S) -> None:
    result = execute.run(_as_postgres(*argv), cwd=root, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(str(argv[0])).name} failed: {result.stderr_text[-800:]}")


def _settings(data: Path, lines: list[str]) -> None:
    with open(data / "postgresql.conf", "a") as fh:
        fh.write("\n# drctl test cluster\n" + "\n".join(lines) + "\n")


def _start_primary(root: Path, port: int) -> Path:
    data = root / "primary"
    _run(
        root,
        PG_BIN / "initdb",
        "-D",
        data,
        "-U",
        OS_USER,
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    )
    _settings(
        data,
        [
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{root}'",
            "wal_level = replica",
            "max_wal_senders = 4",
            "wal_keep_size = '128MB'",
            "fsync = off",
            "shared_buffers = '16MB'",
            "logging_collector = off",
        ],
    )
    _run(root, PG_BIN / "pg_ctl", "-D", data, "-l", root / "primary.log", "-w", "-t", "60", "start")
    return data


def _start_replica(root: Path, primary_port: int, port: int) -> Path:
    data = root / "replica"
    _run(
        root,
        PG_BIN / "pg_basebackup",
        "-h",
        "127.0.0.1",
        "-p",
        str(primary_port),
        "-U",
        OS_USER,
        "-D",
        data,
        "-R",
        "-X",
        "stream",
        "--checkpoint=fast",
        "--no-sync",
    )
    _settings(
        data,
        [
            f"port = {port}",
            "cluster_name = 'drctl_replica'",
            "hot_standby = on",
            f"recovery_min_apply_delay = '{int(APPLY_DELAY_S * 1000)}ms'",
            "wal_receiver_status_interval = '1s'",
        ],
    )
    _run(root, PG_BIN / "pg_ctl", "-D", data, "-l", root / "replica.log", "-w", "-t", "60", "start")
    return data


def _wait_streaming(cluster: PgCluster) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with cluster.connect(cluster.primary_port) as conn:
            if conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchone()[0]:
                return
        time.sleep(0.2)
    raise TimeoutError("the replica did not start streaming within 60s")


def _stop(root: Path, data: Path) -> None:
    if (data / "postmaster.pid").exists():
        execute.run(
            _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop"),
            cwd=root,
            timeout=60,
        )


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A running primary + streaming replica pair (see :class:`PgCluster`)."""
    user = pwd.getpwnam(OS_USER)
    root = Path(tempfile.mkdtemp(prefix="drctl-pgcluster-", dir="/tmp"))
    os.chown(root, user.pw_uid, user.pw_gid)
    root.chmod(0o700)
    started: list[Path] = []
    try:
        primary_port, replica_port = free_port(), free_port()
        started.append(_start_primary(root, primary_port))
        cluster = PgCluster(root, primary_port, replica_port)
        with psycopg.connect(
            host="127.0.0.1", port=primary_port, user=OS_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        started.append(_start_replica(root, primary_port, replica_port))
        _wait_streaming(cluster)
        yield cluster
    finally:
        for data in reversed(started):
            _stop(root, data)
        shutil.rmtree(root, ignore_errors=True)
