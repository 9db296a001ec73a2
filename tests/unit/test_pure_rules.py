"""Small pure rules: prune safety, stale restic locks, rotating check subsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drctl.actions.check import next_subset
from drctl.actions.prune import refusals
from drctl.restic.messages import LockInfo
from drctl.restic.runner import stale_locks


def test_prune_refuses_newest_share_and_alarms():
    assert (
        refusals(remove={"a"}, newest={"s/n": "b"}, total=10, max_share=0.2, open_alarms=[]) == []
    )
    reasons = refusals(
        remove={"a", "b", "c"},
        newest={"s/n": "c"},
        total=10,
        max_share=0.2,
        open_alarms=["n: mass_deletion"],
    )
    assert len(reasons) == 3
    assert "newest snapshot of s/n" in reasons[0]
    assert "30% > prune_max_share 20%" in reasons[1]
    assert "circuit breaker" in reasons[2]


def test_stale_locks_only_when_holder_is_provably_gone():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    fresh_here_dead = LockInfo("1", now - timedelta(minutes=1), True, "me", 111)
    fresh_here_alive = LockInfo("2", now - timedelta(minutes=1), True, "me", 222)
    fresh_elsewhere = LockInfo("3", now - timedelta(minutes=10), False, "other", 5)
    old_elsewhere = LockInfo("4", now - timedelta(minutes=31), False, "other", 5)
    stale = stale_locks(
        [fresh_here_dead, fresh_here_alive, fresh_elsewhere, old_elsewhere],
        now=now,
        hostname="me",
        pid_alive=lambda pid: pid == 222,
    )
    assert [lock.id for lock in stale] == ["1", "4"]


def test_rotating_check_subset():
    assert next_subset("1/28", None) == ("1/28", 1)
    assert next_subset("1/28", 1) == ("2/28", 2)
    assert next_subset("1/28", 28) == ("1/28", 1)
    assert next_subset("5%", 3) == ("5%", None)
