"""The catalog on SQLite and on the machine's PostgreSQL: migrations, run lifecycle,
heartbeats, stale runs, unreachable databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, update

from drctl.catalog.db import Catalog
from drctl.catalog.models import Base, Run
from drctl.catalog.runs import reap_stale, start_run
from drctl.errors import CatalogUnavailable, Interrupted, JobFailed
from tests.support.postgres import create_database, drop_database, pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        cat = Catalog.open(f"sqlite:///{tmp_path / 'cat.db'}")
        yield cat
        cat.close()
    else:
        name = create_database("drctl_catalog")
        cat = Catalog.open(pg_url(name))
        yield cat
        cat.close()
        drop_database(name)


def test_migrations_match_models(catalog):
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_is_idempotent(catalog):
    catalog.migrate()
    catalog.migrate()


def _run(catalog, **kw):
    return start_run(catalog, "backup", site="s", node="n", heartbeat=0.2, **kw)


def test_run_states(catalog):
    with _run(catalog) as ok:
        pass
    with _run(catalog) as warn:
        warn.finish("warning", "1 study vanished")
    with pytest.raises(JobFailed), _run(catalog) as failed:
        raise JobFailed("restic exploded")
    with pytest.raises(Interrupted), _run(catalog) as stopped:
        raise Interrupted("interrupted by SIGTERM")
    with catalog.session() as s:
        states = {r.id: (r.state, r.reason) for r in s.scalars(select(Run))}
    assert states[ok.id] == ("succeeded", None)
    assert states[warn.id] == ("warning", "1 study vanished")
    assert states[failed.id] == ("failed", "restic exploded")
    assert states[stopped.id][0] == "interrupted"


def test_heartbeat_moves_while_running(catalog):
    with _run(catalog) as run:
        with catalog.session() as s:
            first = s.get(Run, run.id).heartbeat_at
        time.sleep(0.8)
        with catalog.session() as s:
            later = s.get(Run, run.id).heartbeat_at
    assert later > first


def test_silent_runs_are_reaped_as_interrupted(catalog):
    with _run(catalog) as run:
        pass
    with catalog.session() as s:
        s.execute(
            update(Run)
            .where(Run.id == run.id)
            .values(state="running", heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    assert reap_stale(catalog, stale_after=60) == [run.id]
    with catalog.session() as s:
        row = s.get(Run, run.id)
    assert row.state == "interrupted" and "no heartbeat" in row.reason


def test_killed_process_run_is_reaped(catalog, tmp_path):
    """A run whose process was SIGKILLed (same host) is interrupted at the next start."""
    code = (
        "import os, time, sys\n"
        "from drctl.catalog.db import Catalog\n"
        "from drctl.catalog.runs import start_run\n"
        f"cat = Catalog.open({str(catalog.url.render_as_string(hide_password=False))!r})\n"
        "with start_run(cat, 'backup', site='s', heartbeat=0.2) as run:\n"
        "    print(run.id, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_id = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    assert run_id in reap_stale(catalog, stale_after=3600)
    with catalog.session() as s:
        assert s.get(Run, run_id).state == "interrupted"


def test_unreachable_postgres_is_exit_3():
    with pytest.raises(CatalogUnavailable) as err:
        Catalog.open("postgresql://postgres@127.0.0.1:1/drctl")
    assert err.value.exit_code == 3
    assert "127.0.0.1:1" in str(err.value) and "unreachable" in str(err.value)


def test_password_never_in_messages():
    with pytest.raises(CatalogUnavailable) as err:
        Catalog.open("postgresql://postgres@127.0.0.1:1/drctl", password="catalog-pw-xyz")
    assert "catalog-pw-xyz" not in str(err.value)
    assert os.environ.get("PGPASSWORD") != "catalog-pw-xyz"
