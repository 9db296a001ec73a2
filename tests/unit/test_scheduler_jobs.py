"""Which jobs each agent runs, and where a timetable resumes after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drctl import config
from drctl.scheduler.jobs import JobSpec, agents, first_fire, jobs_for, next_after

NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)


def settings(schedule: dict, drill: dict | None = None):
    node = {"aet": "X", "storage": "/srv/x", "index": "postgresql://o@db/o", "index_copy": "online"}
    raw = {
        "repository": {
            "offsite": {"url": "/srv/repo", "password": "env:P"},
            "second": {"url": "/srv/repo2", "password": "env:P", "agent": "vault"},
        },
        "node": {
            "pacs1": {**node, "agent": "pacs1", "repository": "offsite"},
            "pacs2": {**node, "agent": "pacs2", "repository": "second"},
            "dr": {
                **node,
                "role": "standby",
                "agent": "dr",
                "primary": "pacs1",
                "replication": "dump",
            },
        },
        "schedule": schedule,
        "drill": drill or {"mode": "dr"},
    }
    return config.from_mapping(raw)


def keys(specs: list[JobSpec]) -> list[str]:
    return [s.key for s in specs]


def test_each_agent_gets_its_own_nodes_repositories_and_drills():
    s = settings(
        {
            "backup": "every:4h",
            "replicate": "every:15m",
            "check": "cron:0 5 * * *",
            "prune": "cron:0 6 * * SUN",
            "drill": "cron:0 2 * * SAT",
        }
    )
    assert keys(jobs_for(s, "pacs1")) == ["backup:pacs1", "check:offsite", "prune:offsite"]
    assert keys(jobs_for(s, "pacs2")) == ["backup:pacs2"]
    assert keys(jobs_for(s, "vault")) == ["check:second", "prune:second"]
    # drill.mode names the standby: its agent drills its primary's snapshots
    assert keys(jobs_for(s, "dr")) == ["replicate:dr", "drill:pacs1"]
    assert jobs_for(s, "nobody") == []
    assert agents(s) == ["dr", "pacs1", "pacs2", "vault"]


def test_off_and_unset_kinds_have_no_jobs_and_index_copy_only_when_set():
    s = settings({"backup": "every:4h", "check": "off"})
    assert keys(jobs_for(s, "pacs1")) == ["backup:pacs1"]
    s = settings({"backup": "every:4h", "index_copy": "cron:30 1 * * *"})
    assert keys(jobs_for(s, "pacs1")) == ["backup:pacs1", "index_copy:pacs1"]


def test_sandbox_drills_cover_every_primary_on_the_drill_agent():
    s = settings({"drill": "cron:0 2 * * SAT"}, drill={"mode": "sandbox", "agent": "dr"})
    assert keys(jobs_for(s, "dr")) == ["drill:pacs1", "drill:pacs2"]
    assert jobs_for(s, "pacs1") == []


def every(seconds: int) -> JobSpec:
    return JobSpec("backup", "pacs1", "pacs1", f"every:{seconds}s")


def test_every_job_that_never_fired_is_due_at_once():
    first = first_fire(every(20), None, NOW, grace=3600)
    assert (first.at, first.reason) == (NOW, "due")


def test_every_job_resumes_on_its_last_slot():
    last = NOW - timedelta(seconds=5)
    first = first_fire(every(20), last, NOW, grace=3600)
    assert (first.at, first.reason) == (last + timedelta(seconds=20), "next")


def test_missed_slots_within_grace_run_once_coalesced_on_the_newest():
    last = NOW - timedelta(seconds=95)  # slots at -75, -55, -35, -15 were missed
    first = first_fire(every(20), last, NOW, grace=60)
    assert first.reason == "catch-up"
    assert first.at == NOW - timedelta(seconds=15)
    assert first.anchor == last  # the timetable keeps its slots


def test_missed_slots_older_than_grace_are_skipped():
    last = NOW - timedelta(hours=10)
    first = first_fire(JobSpec("backup", "p", "a", "every:4h"), last, NOW, grace=3600)
    # slots at -6h and -2h: the newest missed one is 2 h old > grace 1 h
    assert first.skipped == NOW - timedelta(hours=2)
    assert first.at == NOW + timedelta(hours=2) and first.reason == "next"


def test_cron_catch_up_within_grace_and_skip_beyond():
    spec = JobSpec("check", "offsite", "pacs1", "cron:0 * * * *")  # hourly, at :00
    now = NOW + timedelta(minutes=20)  # 12:20; the 12:00 slot was missed
    first = first_fire(spec, NOW - timedelta(hours=3), now, grace=3600, tz=UTC)
    assert (first.at, first.reason) == (NOW, "catch-up")
    first = first_fire(spec, NOW - timedelta(hours=3), now, grace=600, tz=UTC)
    assert first.skipped == NOW and first.at == NOW + timedelta(hours=1)
    # no history: nothing was missed, the next slot
    first = first_fire(spec, None, now, grace=3600, tz=UTC)
    assert (first.at, first.reason) == (NOW + timedelta(hours=1), "next")


def test_next_after_never_lies_in_the_past():
    last = NOW - timedelta(seconds=95)
    assert next_after(every(20), last, NOW, grace=3600) == NOW
    assert next_after(every(20), NOW, NOW, grace=3600) == NOW + timedelta(seconds=20)


def test_a_slot_whose_run_did_not_finish_runs_again_within_grace():
    last = NOW - timedelta(minutes=10)
    first = first_fire(
        JobSpec("backup", "p", "a", "every:4h"), last, NOW, grace=3600, unfinished=True
    )
    assert (first.at, first.reason) == (last, "retry")
    first = first_fire(
        JobSpec("backup", "p", "a", "every:4h"), last, NOW, grace=300, unfinished=True
    )
    assert first.reason == "next" and first.at == last + timedelta(hours=4)
