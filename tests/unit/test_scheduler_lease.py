"""Leases and firing claims on a SQLite catalog: compare-and-set, expiry, fencing tokens,
release, takeover of a dead holder; and stopping a job thread like SIGTERM stops the CLI."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drctl import execute
from drctl.catalog.db import Catalog
from drctl.catalog.models import JobState
from drctl.scheduler import lease
from drctl.scheduler.history import state_agent
from drctl.scheduler.interrupt import DaemonStopping, RunningJobs
from drctl.scheduler.jobs import JobSpec
from drctl.scheduler.runner import claim_firing

NAME = "leader:site:pacs1"


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def test_one_holder_at_a_time_and_tokens_grow(catalog):
    first = lease.acquire(catalog, NAME, "a", 30, {"pid": 1})
    assert first == 1
    assert lease.acquire(catalog, NAME, "b", 30, {}) is None
    assert lease.renew(catalog, NAME, "a", first, 30) is not None
    assert lease.holds(catalog, {NAME: first}, "a") == []
    assert lease.holds(catalog, {NAME: first}, "b") == [NAME]
    assert lease.release(catalog, NAME, "a", first)
    second = lease.acquire(catalog, NAME, "b", 30, {})
    assert second == 2  # released: taken at once, with a new fencing token
    view = lease.get(catalog, NAME)
    assert view is not None and view.holder == "b" and view.alive


def test_an_expired_lease_is_lost_even_if_nobody_took_it(catalog):
    token = lease.acquire(catalog, NAME, "a", 0.3, {})
    time.sleep(0.4)
    assert lease.holds(catalog, {NAME: token}, "a") == [NAME]  # the fence refuses
    assert lease.renew(catalog, NAME, "a", token, 30) is None  # no silent comeback
    taken = lease.acquire(catalog, NAME, "b", 30, {})
    assert taken == token + 1
    assert lease.release(catalog, NAME, "a", token) is False  # cannot free b's lease


def test_a_dead_holder_can_be_taken_over_explicitly(catalog):
    lease.acquire(catalog, NAME, "gone", 30, {})
    assert lease.acquire(catalog, NAME, "new", 30, {}) is None
    assert lease.acquire(catalog, NAME, "new", 30, {}, dead_holder="gone") == 2


def test_names_do_not_match_by_prefix(catalog):
    lease.acquire(catalog, "leader:site:pacs10", "x", 30, {})
    assert lease.get(catalog, "leader:site:pacs1") is None


def test_a_firing_is_claimed_once(catalog):
    spec = JobSpec("check", "offsite", "pacs1", "every:1s")
    slot = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert claim_firing(catalog, "site", spec, slot)
    assert not claim_firing(catalog, "site", spec, slot)
    # the same slot computed by another daemon with rounding noise
    assert not claim_firing(catalog, "site", spec, slot + timedelta(microseconds=3))
    assert not claim_firing(catalog, "site", spec, slot - timedelta(seconds=1))
    assert claim_firing(catalog, "site", spec, slot + timedelta(seconds=1))
    with catalog.session() as s:
        row = s.get(JobState, (state_agent("site", "pacs1"), "check:offsite"))
        assert row.fires == 2 and row.last_fire_at == slot + timedelta(seconds=1)


def test_an_unfinished_slot_may_be_claimed_again_only_as_a_retry(catalog):
    spec = JobSpec("backup", "pacs1", "pacs1", "every:4h")
    slot = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert claim_firing(catalog, "site", spec, slot)  # its daemon dies: state "claimed"
    assert not claim_firing(catalog, "site", spec, slot)
    assert claim_firing(catalog, "site", spec, slot, retry=True)
    with catalog.session() as s:
        row = s.get(JobState, (state_agent("site", "pacs1"), spec.key))
        row.last_state = "succeeded"  # this time it finished
    assert not claim_firing(catalog, "site", spec, slot, retry=True)


def test_concurrent_claims_of_one_slot_have_one_winner(catalog):
    spec = JobSpec("backup", "pacs1", "pacs1", "every:20s")
    slot = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def claim():
        barrier.wait()
        wins.append(claim_firing(catalog, "site", spec, slot))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]


def test_a_job_thread_is_stopped_like_the_cli_stops_a_command(tmp_path):
    """The injected DaemonStopping surfaces in execute.run's wait loop, which stops the
    child with its stop signal; the job's thread ends with the exception."""
    running = RunningJobs()
    seen: dict = {}

    def job():
        try:
            with running.action("backup:x", "job:x", 1):
                execute.run(
                    ["sleep", "30"], stop_grace=5, on_start=lambda proc: seen.update(pid=proc.pid)
                )
        except DaemonStopping as exc:
            seen["exc"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert running.interrupt(DaemonStopping) == 1
    assert running.interrupt(DaemonStopping) == 0  # once per job
    assert running.wait_idle(10)
    thread.join(5)
    assert time.monotonic() - started < 3
    assert "daemon is stopping" in str(seen["exc"])
    assert not Path(f"/proc/{seen['pid']}").exists()  # the child was stopped and reaped
