"""Which jobs an agent runs, and when.

Jobs come from the configuration (``[schedule]``), never from a job store: one job per
kind and target, for the nodes and repositories of one agent (architecture.md: drctl runs
where the data is). The last firing of each job lives in the catalog (``JobState``), so a
restarted daemon, or a new leader, continues the same timetable:

- ``every:`` intervals are anchored on the last firing (slots ``last + k * interval``);
  a job that never fired is due at once.
- ``cron:`` expressions are read in the host's local time zone, like cron.
- After downtime, the newest missed slot runs once (coalesced) if it is no older than
  ``schedule.grace``; older misses are skipped and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tzlocal import get_localzone

from drctl.config import Settings, parse_schedule

JOB_KINDS = ("backup", "index_copy", "replicate", "check", "prune", "drill")
# how far back a cron expression is searched for a missed slot (bounded work)
MAX_CRON_STEPS = 100_000


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: ``kind`` on ``target`` (a node or a repository) for ``agent``."""

    kind: str
    target: str
    agent: str
    schedule: str

    @property
    def key(self) -> str:
        """The job's name in the catalog and in leases (``backup:primary``)."""
        return f"{self.kind}:{self.target}"

    @property
    def trigger_kind(self) -> str:
        return parse_schedule(self.schedule)[0]

    @property
    def interval_s(self) -> float | None:
        kind, value = parse_schedule(self.schedule)
        return float(value) if kind == "every" else None


def _primaries_of(s: Settings, agent: str) -> list[str]:
    return [n for n, v in s.primaries().items() if v.agent == agent]


def _standbys_of(s: Settings, agent: str) -> list[str]:
    return [n for n, v in s.standbys().items() if v.agent == agent]


def _repositories_of(s: Settings, agent: str) -> list[str]:
    return [r for r in s.repository if s.repository_agent(r) == agent]


def _drill_targets(s: Settings, agent: str) -> list[str]:
    """The primaries whose snapshots this agent drills: the drill standby's primary, or
    every primary for sandbox drills."""
    if not s.primaries() or s.drill_agent() != agent:
        return []
    if s.drill.mode != "sandbox":
        standby = s.node[s.drill.mode]
        return [standby.primary or next(iter(s.primaries()))]
    return list(s.primaries())


TARGETS: dict[str, Callable[[Settings, str], list[str]]] = {
    "backup": _primaries_of,
    "index_copy": _primaries_of,
    "replicate": _standbys_of,
    "check": _repositories_of,
    "prune": _repositories_of,
    "drill": _drill_targets,
}


def jobs_for(settings: Settings, agent: str) -> list[JobSpec]:
    """The scheduled jobs of ``agent`` (kinds whose schedule is unset or ``off`` have none)."""
    specs = []
    for kind in JOB_KINDS:
        value = getattr(settings.schedule, kind)
        if value is None or parse_schedule(value)[0] == "off":
            continue
        specs.extend(
            JobSpec(kind, target, agent, value) for target in TARGETS[kind](settings, agent)
        )
    return specs


def agents(settings: Settings) -> list[str]:
    """Every agent named by the configuration (nodes, repository jobs, drills)."""
    found = {node.agent for node in settings.node.values()}
    found |= {settings.repository_agent(r) for r in settings.repository}
    if settings.primaries():
        found.add(settings.drill_agent())
    return sorted(found)


def local_zone() -> Any:
    return get_localzone()


def make_trigger(spec: JobSpec, *, anchor: datetime, tz: Any = None) -> Any:
    """The APScheduler trigger of ``spec``; ``every:`` slots are ``anchor + k * interval``."""
    kind, value = parse_schedule(spec.schedule)
    tz = tz or local_zone()
    if kind == "cron":
        return CronTrigger.from_crontab(value, timezone=tz)
    return IntervalTrigger(seconds=float(value), start_date=anchor, timezone=tz)


@dataclass(frozen=True)
class FirstFire:
    """When a job fires first after a (new) scheduler starts, and why."""

    at: datetime
    reason: str  # "due" (never fired) | "catch-up" (missed slot) | "retry" | "next"
    anchor: datetime  # anchor of every: slots
    skipped: datetime | None = None  # a missed slot older than the grace window


def first_fire(
    spec: JobSpec,
    last_fire: datetime | None,
    now: datetime,
    grace: float,
    tz: Any = None,
    *,
    unfinished: bool = False,
) -> FirstFire:
    """Where the timetable of ``spec`` resumes at ``now`` given its last firing. A last
    firing whose run never finished (``unfinished``: its daemon died, froze or was stopped
    mid-run) runs again once if it is within the grace window."""
    tz = tz or local_zone()
    if unfinished and last_fire is not None and (now - last_fire).total_seconds() <= grace:
        return FirstFire(last_fire, "retry", last_fire)
    interval = spec.interval_s
    if interval is not None:
        if last_fire is None:
            return FirstFire(now, "due", now)
        step = timedelta(seconds=interval)
        missed = int((now - last_fire) / step)  # slots last+1..last+missed are <= now
        if missed < 1:
            return FirstFire(last_fire + step, "next", last_fire)
        slot = last_fire + missed * step
        if (now - slot).total_seconds() <= grace:
            return FirstFire(slot, "catch-up", last_fire)
        return FirstFire(slot + step, "next", last_fire, skipped=slot)
    trigger = make_trigger(spec, anchor=now, tz=tz)
    upcoming = trigger.get_next_fire_time(None, now.astimezone(tz))
    if last_fire is None:
        return FirstFire(upcoming, "next", now)
    slot = latest_slot(trigger, last_fire.astimezone(tz), now.astimezone(tz))
    if slot is None:
        return FirstFire(upcoming, "next", now)
    if (now - slot).total_seconds() <= grace:
        return FirstFire(slot, "catch-up", now)
    return FirstFire(upcoming, "next", now, skipped=slot)


def latest_slot(trigger: Any, after: datetime, now: datetime) -> datetime | None:
    """The newest fire time of ``trigger`` in (``after``, ``now``], or None."""
    found = None
    current = trigger.get_next_fire_time(after, after)
    for _ in range(MAX_CRON_STEPS):
        if current is None or current > now:
            return found
        found = current
        current = trigger.get_next_fire_time(current, current)
    return found


def next_after(
    spec: JobSpec, last_fire: datetime | None, now: datetime, grace: float, tz: Any = None
) -> datetime:
    """The next time ``spec`` fires if a leader runs from ``now`` on (for status)."""
    first = first_fire(spec, last_fire, now, grace, tz)
    return now if first.at < now else first.at


def describe(spec: JobSpec) -> str:
    """A human description of the trigger (``every 15m``, ``cron 0 2 * * SAT (local)``)."""
    kind, value = parse_schedule(spec.schedule)
    if kind == "every":
        from drctl.config import format_duration

        return f"every {format_duration(value)}"
    return f"cron {value} ({local_zone()})"
