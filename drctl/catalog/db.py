"""Opening the catalog: engine, schema migrations (alembic), sessions.

SQLite (embedded default, WAL mode, busy timeout) or PostgreSQL (shared by HA controllers
and a fleet). Any failure to reach the database is a :class:`CatalogUnavailable` (exit 3)
naming the database without its password.
"""

from __future__ import annotations

import contextlib
import logging
import re
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
        """Upgrade the schema to the newest revision (idempotent, concurrency-safe).
        A catalog already at the head is recognised without alembic (importing it costs
        every drctl command about half a second)."""
        if self._at_head():
            return
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

    def _at_head(self) -> bool:
        """True when the catalog's alembic revision is the only head of the migrations
        folder; False when unsure (alembic then decides)."""
        head = _single_head()
        if head is None:
            return False
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except DBAPIError:
            return False  # no version table yet: a new catalog
        return [r[0] for r in rows] == [head]

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


_REVISION = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(.+)$", re.MULTILINE)


def _single_head() -> str | None:
    """The head revision of a linear migration history, read from the version files'
    ``revision`` / ``down_revision`` lines; None when they cannot be read that way."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION.findall(path.read_text()))
        ids = {k: v.strip().strip("'\"") for k, v in found.items()}
        if "revision" not in ids or "down_revision" not in ids:
            return None
        down = ids["down_revision"]
        revisions[ids["revision"]] = None if down == "None" else down
    heads = set(revisions) - {down for down in revisions.values() if down}
    if len(heads) != 1 or any(d and d not in revisions for d in revisions.values()):
        return None
    return heads.pop()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip().splitlines()
    return text_[0][:300] if text_ else type(orig).__name__
