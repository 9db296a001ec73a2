"""Leases on the machine's PostgreSQL: the compare-and-set has one winner among
concurrent candidates (each with its own connection pool, as separate daemons), firing
claims too, and a holder frozen inside its lease transaction neither blocks the others
forever nor keeps its row lock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text, update

from drctl.catalog.db import Catalog
from drctl.catalog.models import Lease
from drctl.errors import CatalogUnavailable
from drctl.scheduler import lease
from drctl.scheduler.jobs import JobSpec
from drctl.scheduler.runner import claim_firing
from tests.support.postgres import pg_url

NAME = "leader:site:pacs1"


@pytest.fixture
def catalogs(pg_database):
    opened = [Catalog.open(pg_url(pg_database)) for _ in range(6)]
    yield opened
    for cat in opened:
        cat.close()


def race(catalogs, call) -> list:
    barrier = threading.Barrier(len(catalogs))
    results: list = [None] * len(catalogs)

    def run(i: int, cat: Catalog) -> None:
        barrier.wait()
        results[i] = call(i, cat)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(catalogs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_candidates_elect_exactly_one(catalogs):
    for round_ in range(1, 4):
        tokens = race(catalogs, lambda i, cat: lease.acquire(cat, NAME, f"d{i}", 30, {"i": i}))
        winners = [t for t in tokens if t is not None]
        assert winners == [round_], tokens  # one winner, token bumped once per term
        holder = lease.get(catalogs[0], NAME)
        assert holder is not None and holder.alive
        assert lease.release(catalogs[0], NAME, holder.holder, holder.token)


def test_concurrent_claims_of_one_firing_have_one_winner(catalogs):
    spec = JobSpec("check", "offsite", "pacs1", "every:1s")
    for second in range(3):
        slot = datetime(2026, 1, 1, 12, 0, second, tzinfo=UTC)
        wins = race(catalogs, lambda i, cat, slot=slot: claim_firing(cat, "site", spec, slot))
        assert sorted(wins) == [False] * 5 + [True]


def test_a_holder_frozen_inside_its_transaction_does_not_block_takeover(catalogs):
    frozen_cat, other = catalogs[0], catalogs[1]
    token = lease.acquire(frozen_cat, NAME, "frozen", 1, {})
    # the frozen daemon was renewing: UPDATE done, COMMIT never comes (SIGSTOP)
    session = frozen_cat._sessions()
    lease.guard(session)
    session.execute(update(Lease).where(Lease.name == NAME).values(holder="frozen"))
    try:
        time.sleep(1.2)  # its lease has expired meanwhile
        started = time.monotonic()
        with pytest.raises(CatalogUnavailable):
            lease.acquire(other, NAME, "other", 30, {})  # waits at most lock_timeout
        assert time.monotonic() - started < 5
        # the server ends the idle transaction (idle_in_transaction_session_timeout) and
        # with it the row lock: the next attempt wins
        deadline = time.monotonic() + 15
        taken = None
        while taken is None and time.monotonic() < deadline:
            try:
                taken = lease.acquire(other, NAME, "other", 30, {})
            except CatalogUnavailable:
                time.sleep(0.5)
        assert taken == token + 1
        with pytest.raises(Exception):  # noqa: B017 - the frozen session was terminated
            session.execute(text("SELECT 1"))
    finally:
        session.close()
