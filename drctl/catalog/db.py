"""Opening the catalog: engine, schema migrations (alembic), sessions.

SQLite (embedded default, WAL mode, busy timeout) or PostgreSQL (shared by HA controllers
and a fleet). Any failure to reach the database is a :class:`CatalogUnavailable` (exit 3)
naming the database without its password.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from drctl.errors import CatalogUnavailable, ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_S = 10


def normalize_url(url: str, password: str | None = None) -> URL:
    """A SQLAlchemy URL with drctl's drivers (psycopg 3 for PostgreSQL)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("config", [("controller.catalog", f"not a database URL: {url!r}")]) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if password is not None and parsed.drivername.startswith("postgresql"):
        parsed = parsed.set(password=password)
    return parsed


def describe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Catalog:
    """The catalog database. Use :meth:`session` for units of work."""

    def __init__(self, url: URL, engine: Engine):
        self.url = url
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def where(self) -> str:
        return describe(self.url)

    @classmethod
    def open(cls, url: str, *, password: str | None = None, migrate: bool = True) -> Catalog:
        """Connect (creating a SQLite file's folder) and bring the schema to the newest
        version. Raises :class:`CatalogUnavailable`."""
        parsed = normalize_url(url, password)
        kwargs: dict = {"pool_pre_ping": True, "future": True}
        if parsed.drivername.startswith("sqlite"):
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        elif parsed.drivername.startswith("postgresql"):
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
            kwargs["pool_size"] = 5
        engine = create_engine(parsed, **kwargs)
        if parsed.drivername.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        catalog = cls(parsed, engine)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            if migrate:
                catalog.migrate()
        except (OperationalError, DBAPIError, OSError) as exc:
            engine.dispose()
            raise CatalogUnavailable(
                f"catalog database {describe(parsed)} is unreachable: {_reason(exc)}",
                hint="check controller.catalog; for PostgreSQL, is the server running and "
                "does the user exist?",
            ) from None
        return catalog

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (idempotent, concurrency-safe)."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # one migrator at a time across controllers sharing the catalog
                conn.execute(text("SELECT pg_advisory_xact_lock(727373)"))
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            log.info("migrating catalog %s from %s to %s", self.where, current, head)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed at the end, rolled back on error. Database failures
        become :class:`CatalogUnavailable`."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            if isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False):
                raise CatalogUnavailable(
                    f"catalog database {self.where} failed: {_reason(exc)}",
                    hint="nothing half-written was kept; retry when the database is back",
                ) from None
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip().splitlines()
    return text_[0][:300] if text_ else type(orig).__name__
