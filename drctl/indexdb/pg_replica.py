"""Lag of a PostgreSQL streaming replica, measured honestly.

Bytes first: ``pg_current_wal_lsn()`` on the primary against the replica's ``replay_lsn``
in ``pg_stat_replication``. A time lag exists only when bytes are behind: on an idle
primary ``pg_last_xact_replay_timestamp()`` stops moving, and "now minus replay time"
would grow all night without any lag. When bytes are behind, drctl waits a moment for the
replica to reach the primary's position (a transient record, e.g. a checkpoint, is not
lag); only when it does not catch up is the lag taken from ``replay_lag`` or, failing
that, from the replay timestamp (an upper bound).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drctl.errors import JobFailed, NodeUnreachable
from drctl.indexdb.postgres_index import PgTarget, connect

SETTLE_S = 2.0
POLL_S = 0.1

_ROWS = """SELECT application_name, state, replay_lsn::text,
                  pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
                  EXTRACT(EPOCH FROM replay_lag)::float8
           FROM pg_stat_replication ORDER BY application_name"""
_REPLICA = """SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
                     pg_last_xact_replay_timestamp(), current_setting('cluster_name')"""


@dataclass(frozen=True)
class ReplicaLag:
    """One measurement. ``lag_s`` is 0 when ``lag_bytes`` is 0; ``method`` says how the
    time lag was obtained (``lsn``, ``catch-up``, ``replay_lag``, ``replay_timestamp``)."""

    primary_lsn: str
    replay_lsn: str | None
    lag_bytes: int
    lag_s: float
    method: str
    source: str  # where replay_lsn came from: pg_stat_replication row name, or "replica"
    replay_time: datetime | None
    measured_at: datetime

    def to_json(self) -> dict:
        return {
            "primary_lsn": self.primary_lsn,
            "replay_lsn": self.replay_lsn,
            "lag_bytes": self.lag_bytes,
            "lag_s": round(self.lag_s, 3),
            "method": self.method,
            "source": self.source,
            "replay_time": self.replay_time.isoformat() if self.replay_time else None,
            "measured_at": self.measured_at.isoformat(),
        }


@dataclass(frozen=True)
class _Replica:
    replay_lsn: str | None
    replay_time: datetime | None
    cluster_name: str


def _read_replica(replica: PgTarget, password: str | None) -> _Replica:
    conn = connect(replica, password, autocommit=True)
    try:
        recovering, lsn, replay_time, cluster = conn.execute(_REPLICA).fetchone()
    finally:
        conn.close()
    if not recovering:
        raise JobFailed(
            f"standby index {replica} is not a streaming replica (not in recovery: "
            "promoted, or not a replica at all)"
        )
    return _Replica(lsn, replay_time, cluster or "")


def _pick(rows: list[tuple], names: tuple[str, ...]) -> tuple | None:
    """The pg_stat_replication row of this replica: by application_name (the standby's
    node name or the replica's cluster_name), else the only streaming row."""
    for row in rows:
        if row[0] and row[0] in names:
            return row
    streaming = [r for r in rows if r[1] == "streaming"]
    return streaming[0] if len(streaming) == 1 else None


def measure(
    primary: PgTarget,
    primary_password: str | None,
    replica: PgTarget,
    replica_password: str | None,
    *,
    name: str,
    settle: float = SETTLE_S,
) -> ReplicaLag:
    """Measure ``replica``'s lag behind ``primary`` (``name``: the standby's node name, an
    ``application_name`` to look for). Raises NodeUnreachable when the primary cannot be
    reached, JobFailed when no replica is streaming from it."""
    try:
        info: _Replica | None = _read_replica(replica, replica_password)
    except NodeUnreachable:
        info = None  # the primary's view is enough to measure
    conn = connect(primary, primary_password, autocommit=True)
    try:
        names = (name, info.cluster_name) if info else (name,)
        primary_lsn, lag_bytes, replay_lsn, source, replay_lag = _position(conn, info, names)
        if lag_bytes == 0:
            return _result(primary_lsn, replay_lsn, 0, 0.0, "lsn", source, info)
        started = time.monotonic()
        while time.monotonic() - started < settle:
            time.sleep(POLL_S)
            if _reached(conn, replica, replica_password, names, primary_lsn, info):
                return _result(
                    primary_lsn,
                    replay_lsn,
                    lag_bytes,
                    time.monotonic() - started,
                    "catch-up",
                    source,
                    info,
                )
        lag_s, method = _time_lag(replay_lag, info, settle)
        return _result(primary_lsn, replay_lsn, lag_bytes, lag_s, method, source, info)
    finally:
        conn.close()


def _position(
    conn: Any, info: _Replica | None, names: tuple[str, ...]
) -> tuple[str, int, str | None, str, float | None]:
    """(primary LSN, bytes behind, replay LSN, its source, replay_lag). Both views of the
    replay position are read when available and the more recent one wins: the primary's
    ``pg_stat_replication`` row is only as fresh as the replica's last status message."""
    primary_lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    row = _pick(conn.execute(_ROWS).fetchall(), names)
    views: list[tuple[int, str, str, float | None]] = []
    if row is not None and row[2] is not None:
        views.append((max(0, int(row[3])), row[2], row[0] or "walreceiver", row[4]))
    if info is not None and info.replay_lsn is not None:
        diff = conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (primary_lsn, info.replay_lsn)
        ).fetchone()[0]
        views.append(
            (max(0, int(diff)), info.replay_lsn, "replica", views[0][3] if views else None)
        )
    if not views:
        raise JobFailed(
            "no streaming replica is connected to the primary "
            "(pg_stat_replication is empty and the replica cannot be read)",
            hint="check the replica's primary_conninfo and that it is running",
        )
    lag_bytes, replay_lsn, source, replay_lag = min(views, key=lambda v: v[0])
    return primary_lsn, lag_bytes, replay_lsn, source, replay_lag


def _reached(
    conn: Any,
    replica: PgTarget,
    password: str | None,
    names: tuple[str, ...],
    target_lsn: str,
    info: _Replica | None,
) -> bool:
    """True once the replica has replayed up to ``target_lsn``."""
    if info is not None:
        try:
            replay = _read_replica(replica, password).replay_lsn
        except NodeUnreachable:
            replay = None
    else:
        row = _pick(conn.execute(_ROWS).fetchall(), names)
        replay = row[2] if row else None
    if replay is None:
        return False
    diff = conn.execute(
        "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (target_lsn, replay)
    ).fetchone()[0]
    return diff <= 0


def _time_lag(replay_lag: float | None, info: _Replica | None, settle: float) -> tuple[float, str]:
    if replay_lag is not None:
        return max(settle, float(replay_lag)), "replay_lag"
    if info is not None and info.replay_time is not None:
        behind = (datetime.now(UTC) - info.replay_time).total_seconds()
        return max(settle, behind), "replay_timestamp"
    return settle, "catch-up"


def _result(
    primary_lsn: str,
    replay_lsn: str | None,
    lag_bytes: int,
    lag_s: float,
    method: str,
    source: str,
    info: _Replica | None,
) -> ReplicaLag:
    return ReplicaLag(
        primary_lsn,
        replay_lsn,
        lag_bytes,
        lag_s,
        method,
        source,
        info.replay_time if info else None,
        datetime.now(UTC),
    )
