"""Whole PostgreSQL databases as units: create, drop, and swap names.

A dump-mode standby is refreshed by restoring into a separate database and then swapping
names while the standby's PACS is stopped: ``live`` becomes ``prev`` and ``new`` becomes
``live`` in ONE transaction (PostgreSQL renames databases transactionally), so the
standby sees either the old index or the new one, never a mix. PostgreSQL refuses to
rename a database anyone is connected to, so other sessions are terminated first.

Administrative statements run on a maintenance database of the same server (``postgres``,
else ``template1``), never on the databases being renamed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from drctl.errors import JobFailed, NodeUnreachable
from drctl.indexdb.postgres_index import PgTarget, connect

log = logging.getLogger(__name__)

MAINTENANCE_DATABASES = ("postgres", "template1")
MAX_NAME = 63  # NAMEDATALEN - 1
SESSION_WAIT_S = 10.0


def admin_connection(target: PgTarget, password: str | None) -> Any:
    """An autocommit connection to a maintenance database on ``target``'s server.
    Raises NodeUnreachable when none accepts the connection."""
    last: NodeUnreachable | None = None
    for name in MAINTENANCE_DATABASES:
        try:
            return connect(target, password, database=name, autocommit=True)
        except NodeUnreachable as exc:
            last = exc
    assert last is not None
    raise last


def _ident(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(name)


def check_name(name: str) -> str:
    """``name`` if PostgreSQL can hold it without truncation; JobFailed otherwise."""
    if len(name.encode("utf-8")) > MAX_NAME:
        raise JobFailed(
            f"database name {name!r} is longer than {MAX_NAME} bytes",
            hint="use a shorter standby database name",
        )
    return name


def exists(conn: Any, name: str) -> bool:
    """True when database ``name`` exists on the server of ``conn``."""
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def create(conn: Any, name: str) -> None:
    """Create an empty database ``name`` from ``template0`` (what a custom-format dump
    expects to be restored into)."""
    from psycopg import sql

    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(_ident(check_name(name))))


def drop(conn: Any, name: str) -> bool:
    """Drop database ``name`` if it exists, ending its sessions first. Returns whether
    it existed."""
    from psycopg import sql

    if not exists(conn, name):
        return False
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(name)))
    log.info("dropped database %s", name)
    return True


def terminate_sessions(conn: Any, names: list[str], *, wait: float = SESSION_WAIT_S) -> int:
    """End every other session connected to ``names`` and wait until they are gone.
    Returns how many were terminated; raises JobFailed if some remain after ``wait``."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()"
    pids = [row[0] for row in conn.execute(query, (names,))]
    for pid in pids:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + wait
    while conn.execute(query, (names,)).fetchone() is not None:
        if time.monotonic() > deadline:
            raise JobFailed(
                f"sessions on {', '.join(names)} did not end within {wait:.0f}s",
                hint="stop whatever keeps reconnecting to the standby index",
            )
        time.sleep(0.05)
    return len(pids)


def swap(conn: Any, *, live: str, new: str, prev: str) -> bool:
    """Rename ``live`` -> ``prev`` (when ``live`` exists) and ``new`` -> ``live`` in one
    transaction, after ending other sessions on both. ``prev`` must not exist. Returns
    whether there was a ``live`` database to keep as ``prev``. Raises JobFailed."""
    import psycopg
    from psycopg import sql

    check_name(prev)
    for attempt in (1, 2, 3):
        terminate_sessions(conn, [live, new])
        had_live = exists(conn, live)
        try:
            with conn.transaction():
                if had_live:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(live), _ident(prev))
                    )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(new), _ident(live))
                )
            return had_live
        except psycopg.errors.ObjectInUse as exc:  # someone reconnected in between
            if attempt == 3:
                raise JobFailed(f"could not swap databases {new} -> {live}: {exc}") from None
        except psycopg.Error as exc:
            raise JobFailed(f"could not swap databases {new} -> {live}: {exc}") from None
    return False  # not reached
