"""A leadership term with APScheduler for real and the actions replaced by recorders:
missed slots after downtime run once, coalesced; the fence passes while the leases are
held and stops the job once they are not; a daemon that lost its lease runs nothing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from drctl import config
from drctl.catalog.db import Catalog
from drctl.catalog.models import JobState, Run
from drctl.notify.notifier import Notifier
from drctl.scheduler import lease, work
from drctl.scheduler.interrupt import LeaseLost, RunningJobs
from drctl.scheduler.jobs import JobSpec
from drctl.scheduler.metrics import Metrics
from drctl.scheduler.runner import Leadership
from drctl.scheduler.term import Term
from tests.support.scheduler import wait_for


@pytest.fixture
def world(tmp_path, monkeypatch):
    settings = config.from_mapping(
        {
            "controller": {"site": "main"},
            "repository": {
                "r1": {"url": str(tmp_path / "repo"), "password": "env:P", "agent": "a"}
            },
            "schedule": {"check": "every:20s", "grace": "10s"},
        }
    )
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    calls: list = []

    def check(ctx, target):
        ctx.check_fence()  # the leases are held while the job runs
        calls.append((ctx, target))
        return work.Outcome("succeeded")

    monkeypatch.setitem(work.ACTIONS, "check", check)
    lost: list[str] = []
    token = lease.acquire(catalog, lease.leader_name("main", "a"), "me", 30, {})
    notifier = Notifier(settings.notify, site="main")
    term = Term(
        Leadership(
            catalog,
            lambda: settings,
            "a",
            "me",
            token,
            notifier,
            Metrics("main", "a"),
            RunningJobs(),
            threading.Event(),
            lost.append,
        )
    )
    yield settings, catalog, term, calls, lost
    term.stop_scheduler()
    notifier.close(1)
    catalog.close()


def set_last_fire(catalog: Catalog, when: datetime, state: str = "succeeded") -> None:
    with catalog.session() as s:
        s.add(
            JobState(agent="main/a", job="check:r1", last_fire_at=when, fires=3, last_state=state)
        )


def test_missed_slots_after_downtime_run_once_on_the_newest(world):
    _, catalog, term, calls, _ = world
    last = datetime.now(UTC) - timedelta(seconds=45)  # slots -25 and -5 were missed
    set_last_fire(catalog, last)
    term.start()
    wait_for(lambda: calls, 10, what="the catch-up run")
    time.sleep(1.5)
    assert len(calls) == 1
    ctx, target = calls[0]
    assert target == "r1" and ctx.trigger == "scheduler"
    with catalog.session() as s:
        row = s.get(JobState, ("main/a", "check:r1"))
        assert row.fires == 4 and row.last_state == "succeeded"
        assert row.last_fire_at == last + timedelta(seconds=40)
    job = term.scheduler.get_job("check:r1")
    assert job.next_run_time == last + timedelta(seconds=60)


def test_missed_slots_older_than_grace_are_not_run(world):
    _, catalog, term, calls, _ = world
    set_last_fire(catalog, datetime.now(UTC) - timedelta(seconds=35))  # missed -15 > grace
    term.start()
    time.sleep(1.5)
    assert calls == []


def test_the_fence_stops_a_job_once_the_lease_is_lost(world):
    _, catalog, term, _, lost = world
    spec = JobSpec("check", "r1", "a", "every:20s")
    name = lease.job_lease_name("main", "a", spec.key)
    token = lease.acquire(catalog, name, "me", 30, {})
    term.runner.fence(spec, name, token)  # leadership and job lease held: go on
    lease.release(catalog, lease.leader_name("main", "a"), "me", term.token)
    with pytest.raises(LeaseLost, match="lost leader:main:a"):
        term.runner.fence(spec, name, token)
    assert lost and "lost" in lost[0]


def test_a_daemon_that_lost_its_lease_runs_nothing(world):
    _, catalog, term, calls, lost = world
    lease.release(catalog, lease.leader_name("main", "a"), "me", term.token)
    assert lease.acquire(catalog, lease.leader_name("main", "a"), "other", 30, {})
    term.start()  # never fired: due at once
    wait_for(lambda: lost, 10, what="the step-down request")
    time.sleep(0.5)
    assert calls == []
    with catalog.session() as s:
        assert s.query(Run).count() == 0 and s.get(JobState, ("main/a", "check:r1")) is None


def test_a_slot_cut_short_by_a_dead_leader_runs_again_once(world):
    _, catalog, term, calls, _ = world
    slot = datetime.now(UTC) - timedelta(seconds=8)  # claimed, never finished
    set_last_fire(catalog, slot, state="claimed")
    term.start()
    wait_for(lambda: calls, 10, what="the retry")
    time.sleep(1)
    assert len(calls) == 1
    with catalog.session() as s:
        row = s.get(JobState, ("main/a", "check:r1"))
        assert row.last_fire_at == slot and row.fires == 4 and row.last_state == "succeeded"
