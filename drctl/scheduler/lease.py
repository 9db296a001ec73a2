"""Leases in the catalog: scheduler leadership per agent and the run lock of each job.

A lease is a row (:class:`drctl.catalog.models.Lease`) taken by compare-and-set: one
``UPDATE ... WHERE name = :name AND (expires_at < now OR holder = '')`` that bumps the
fencing ``token``. Whoever gets the row back holds the lease until ``expires_at`` and must
renew it (``UPDATE ... WHERE holder = :me AND token = :mine AND expires_at > now``) before
then. A lease that expired is lost, even if nobody took it meanwhile: the holder steps down
and acquires again with a new token. Before any job step, :func:`holds` checks the row with
the database's clock, so a process that was frozen (SIGSTOP, a stalled VM) past its
expiry cannot act on the old token.

Times come from the database server on PostgreSQL (hosts' clocks may differ), from this
host on SQLite (one machine). On PostgreSQL every lease transaction sets ``lock_timeout``
and ``idle_in_transaction_session_timeout``: a process frozen between its UPDATE and its
COMMIT would otherwise hold the row lock, and the other daemons' compare-and-set, forever.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from drctl.catalog.db import Catalog
from drctl.catalog.models import Lease
from drctl.errors import UnavailableError
from drctl.execute import pid_alive

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FREE = ""


class AlreadyRunning(UnavailableError):
    """Another daemon already serves this agent on a catalog that allows only one (exit 3:
    the job cannot start, the configuration is fine)."""


@dataclass(frozen=True)
class LeaseView:
    """A lease row as read at ``now`` (the database's clock)."""

    name: str
    holder: str
    token: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    info: dict
    now: datetime

    @property
    def alive(self) -> bool:
        return bool(self.holder) and self.expires_at > self.now

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "holder": self.holder or None,
            "token": self.token,
            "since": self.acquired_at.isoformat(),
            "renewed_at": self.renewed_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "alive": self.alive,
            "host": self.info.get("host"),
            "pid": self.info.get("pid"),
            "info": self.info,
        }


def leader_name(site: str, agent: str) -> str:
    return f"leader:{site}:{agent}"


def job_lease_name(site: str, agent: str, job: str) -> str:
    return f"job:{site}:{agent}:{job}"


def db_now(session: Session) -> datetime:
    """The current UTC time by the database's clock (PostgreSQL) or this host's (SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        value = session.execute(text("SELECT clock_timestamp() AT TIME ZONE 'UTC'")).scalar_one()
        return value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def guard(session: Session, *, lock_timeout_s: float = 2.0) -> None:
    """Bound how long this transaction may wait for, or sit on, a row lock (PostgreSQL)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ms = max(100, int(lock_timeout_s * 1000))
    session.execute(text(f"SET LOCAL lock_timeout = {ms}"))
    session.execute(text(f"SET LOCAL statement_timeout = {ms * 3}"))
    session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {ms * 3}"))


def insert_ignore(session: Session, model: Any, values: dict) -> int:
    """INSERT a row unless its primary key exists (no error, no wait on SQLite); returns
    the number of rows inserted (0 or 1)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    result = session.execute(insert(model).values(**values).on_conflict_do_nothing())
    return result.rowcount or 0


def _ensure_row(session: Session, name: str) -> None:
    insert_ignore(
        session,
        Lease,
        {
            "name": name,
            "holder": FREE,
            "token": 0,
            "acquired_at": EPOCH,
            "renewed_at": EPOCH,
            "expires_at": EPOCH,
            "info": {},
        },
    )


def acquire(
    catalog: Catalog,
    name: str,
    holder: str,
    ttl: float,
    info: dict,
    *,
    dead_holder: str | None = None,
) -> int | None:
    """Take lease ``name`` if it is free or expired (or held by ``dead_holder``, a holder
    proven gone). Returns the new fencing token, or None when another holder has it."""
    with catalog.session() as s:
        guard(s)
        _ensure_row(s, name)
        now = db_now(s)
        takeable = [Lease.expires_at < now, Lease.holder == FREE]
        if dead_holder:
            takeable.append(Lease.holder == dead_holder)
        row = s.execute(
            update(Lease)
            .where(Lease.name == name, or_(*takeable))
            .values(
                holder=holder,
                token=Lease.token + 1,
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=ttl),
                info=info,
            )
            .returning(Lease.token)
        ).first()
    return int(row[0]) if row else None


def renew(catalog: Catalog, name: str, holder: str, token: int, ttl: float) -> datetime | None:
    """Extend a lease this holder still has (same token, not expired). Returns the new
    expiry, or None when the lease was lost."""
    with catalog.session() as s:
        guard(s)
        now = db_now(s)
        row = s.execute(
            update(Lease)
            .where(
                Lease.name == name,
                Lease.holder == holder,
                Lease.token == token,
                Lease.expires_at > now,
            )
            .values(renewed_at=now, expires_at=now + timedelta(seconds=ttl))
            .returning(Lease.expires_at)
        ).first()
    return row[0] if row else None


def release(catalog: Catalog, name: str, holder: str, token: int) -> bool:
    """Give the lease up now (the next candidate need not wait for the expiry). Returns
    whether this holder still had it."""
    with catalog.session() as s:
        guard(s)
        now = db_now(s)
        result = s.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder, Lease.token == token)
            .values(holder=FREE, expires_at=now, renewed_at=now)
        )
        return bool(result.rowcount)


def holds(catalog: Catalog, names_tokens: dict[str, int], holder: str) -> list[str]:
    """Check that ``holder`` still holds each lease with the given token and that none has
    expired by the database's clock. Returns the names that fail (empty: all held)."""
    with catalog.session() as s:
        now = db_now(s)
        rows = {r.name: r for r in s.scalars(select(Lease).where(Lease.name.in_(names_tokens)))}
    lost = []
    for name, token in names_tokens.items():
        row = rows.get(name)
        if row is None or row.holder != holder or row.token != token or row.expires_at <= now:
            lost.append(name)
    return lost


def get(catalog: Catalog, name: str) -> LeaseView | None:
    """The lease ``name`` as seen now (None when it never existed)."""
    return next((view for view in read(catalog, name) if view.name == name), None)


def read(catalog: Catalog, prefix: str) -> list[LeaseView]:
    """Every lease whose name starts with ``prefix``, as seen now."""
    with catalog.session() as s:
        now = db_now(s)
        rows = s.scalars(
            select(Lease).where(Lease.name.startswith(prefix, autoescape=True)).order_by(Lease.name)
        ).all()
        return [
            LeaseView(
                r.name,
                r.holder,
                r.token,
                r.acquired_at,
                r.renewed_at,
                r.expires_at,
                dict(r.info or {}),
                now,
            )
            for r in rows
        ]


def acquire_single(
    catalog: Catalog, name: str, holder: str, ttl: float, info: dict, *, what: str
) -> int:
    """Take ``name`` for a daemon that must be the only one (SQLite catalog: one machine).
    A holder on this host whose process is gone is taken over at once. Returns the token;
    raises :class:`AlreadyRunning` naming the live holder."""
    token = acquire(catalog, name, holder, ttl, info)
    if token is not None:
        return token
    view = get(catalog, name)
    held = view.info if view else {}
    if (
        view
        and held.get("host") == socket.gethostname()
        and not pid_alive(int(held.get("pid") or 0))
    ):
        log.warning(
            "%s: the daemon that held the lease (pid %s) is gone; taking over",
            what,
            held.get("pid"),
        )
        token = acquire(catalog, name, holder, ttl, info, dead_holder=view.holder)
        if token is not None:
            return token
    until = view.expires_at.isoformat(timespec="seconds") if view else "?"
    raise AlreadyRunning(
        f"another drctl scheduler already serves {what} with this SQLite catalog (pid "
        f"{held.get('pid')} on {held.get('host')}, lease until {until})",
        hint="a SQLite catalog allows one daemon per agent: stop the other one, or use a "
        "PostgreSQL catalog for redundant daemons",
    )
