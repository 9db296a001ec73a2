"""PostgreSQL index databases: online dumps, restores, and replica lag.

An online copy is ``pg_dump -Fc`` on a snapshot exported by a REPEATABLE READ transaction
that stays open while drctl also reads the inventory through it: the dump and the
manifest see exactly the same point in time while the node keeps accepting C-STORE.
Passwords travel in ``PGPASSWORD`` (never argv); connection strings in messages carry
no password.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from drctl import execute
from drctl.errors import JobFailed, NodeUnreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PgTarget:
    """Where a PostgreSQL database is, without its password."""

    host: str
    port: int
    user: str
    database: str

    @classmethod
    def parse(cls, url: str) -> PgTarget:
        """``postgresql://user@host:port/db`` (password in the URL is ignored: use a secret
        reference)."""
        parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
        if parts.scheme not in ("postgresql",) or not parts.path.strip("/"):
            raise ValueError(f"not a postgresql://user@host/database URL: {url!r}")
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432,
                   unquote(parts.username or "postgres"), unquote(parts.path.strip("/")))

    def with_database(self, database: str) -> PgTarget:
        return PgTarget(self.host, self.port, self.user, database)

    def __str__(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def conninfo(self, password: str | None = None, database: str | None = None) -> dict:
        info = {"host": self.host, "port": self.port, "user": self.user,
                "dbname": database or self.database, "connect_timeout": 10}
        if password:
            info["password"] = password
        return info

    def env(self, password: str | None) -> dict[str, str]:
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
               "PGCONNECT_TIMEOUT": "10"}
        if password:
            env["PGPASSWORD"] = password
        return env


def connect(target: PgTarget, password: str | None, *, database: str | None = None,
            autocommit: bool = False) -> Any:
    """A psycopg connection. Raises NodeUnreachable naming the database."""
    import psycopg

    try:
        return psycopg.connect(**target.conninfo(password, database), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise NodeUnreachable(
            f"index database {target.with_database(database or target.database)} "
            f"unreachable: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
        ) from None


@contextlib.contextmanager
def exported_snapshot(target: PgTarget, password: str | None) -> Iterator[tuple[Any, str]]:
    """(connection, snapshot name) inside an open REPEATABLE READ, READ ONLY transaction;
    the snapshot stays valid until the block ends."""
    conn = connect(target, password)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield conn, snapshot
        conn.rollback()
    finally:
        conn.close()


def pg_dump_argv(out: Path, *, snapshot: str | None = None, database: str) -> list[str]:
    argv = ["pg_dump", "-Fc", "--no-owner", "--no-privileges", "-f", str(out)]
    if snapshot:
        argv += ["--snapshot", snapshot]
    return [*argv, "--dbname", database]


def dump(target: PgTarget, password: str | None, out: Path, *,
         during: Callable[[Any], Any] | None = None, timeout: float | None = None) -> Any:
    """``pg_dump -Fc`` of ``target`` into ``out`` on an exported snapshot. ``during(conn)``
    runs inside the same snapshot (the inventory read) and its result is returned."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with exported_snapshot(target, password) as (conn, snapshot):
        result = execute.run(pg_dump_argv(part, snapshot=snapshot, database=target.database),
                             env=target.env(password), timeout=timeout,
                             secrets=[password or ""], env_drop_prefixes=("PG",))
        if result.returncode != 0:
            part.unlink(missing_ok=True)
            raise JobFailed(f"pg_dump of {target} failed: {result.stderr_text[-500:]}")
        inventory = during(conn) if during else None
    part.replace(out)
    return inventory


def check_dump(path: Path) -> int:
    """Entries in a custom-format dump (``pg_restore --list``); raises JobFailed when the
    dump is unreadable."""
    result = execute.run(["pg_restore", "--list", str(path)], timeout=300)
    if result.returncode != 0:
        raise JobFailed(f"index dump {path} is unreadable: {result.stderr_text[-300:]}")
    return sum(1 for line in result.stdout.splitlines() if line and not line.startswith(";"))


def restore(target: PgTarget, password: str | None, dump_path: Path, *,
            timeout: float | None = None, on_start=None) -> None:
    """``pg_restore`` ``dump_path`` into the (new, empty) database of ``target``."""
    argv = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", "--dbname", target.database, str(dump_path)]
    result = execute.run(argv, env=target.env(password), timeout=timeout,
                         secrets=[password or ""], env_drop_prefixes=("PG",), on_start=on_start)
    if result.returncode != 0:
        raise JobFailed(f"pg_restore into {target} failed: {result.stderr_text[-500:]}")
