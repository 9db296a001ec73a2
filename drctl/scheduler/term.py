"""A leadership term: from the moment a daemon takes its agent's lease (with a new fencing
token) to the moment it steps down. A term owns one APScheduler scheduler (in-memory job
store: the jobs come from the configuration) and the runner of its firings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from drctl.catalog.models import JobState
from drctl.scheduler.history import state_agent
from drctl.scheduler.jobs import (
    FirstFire,
    JobSpec,
    describe,
    first_fire,
    jobs_for,
    local_zone,
    make_trigger,
)
from drctl.scheduler.runner import UNFINISHED, FiringExecutor, JobRunner, Leadership

log = logging.getLogger(__name__)

MAX_WORKERS = 16


class Term:
    """One leadership term of a daemon (see the module docstring)."""

    def __init__(self, leadership: Leadership):
        self.leadership = leadership
        self.token = leadership.token
        self.runner = JobRunner(leadership, {})
        self.scheduler: BackgroundScheduler | None = None

    def start(self) -> list[JobSpec]:
        """Start the scheduler with the agent's jobs; returns them."""
        specs = jobs_for(self.leadership.settings(), self.leadership.agent)
        workers = min(MAX_WORKERS, max(2, len(specs) + 1))
        self.scheduler = BackgroundScheduler(
            executors={"default": FiringExecutor(max_workers=workers)},
            timezone=local_zone(),
            daemon=True,
        )
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self.scheduler.start(paused=True)
        self.reschedule()
        self.scheduler.resume()
        return specs

    def reschedule(self) -> list[JobSpec]:
        """(Re)load the jobs from the current settings, resuming each timetable from its last
        firing in the catalog. Returns the jobs."""
        assert self.scheduler is not None
        settings = self.leadership.settings()
        specs = jobs_for(settings, self.leadership.agent)
        site, grace = settings.controller.site, settings.schedule.grace
        with self.leadership.catalog.session() as s:
            last = {
                row.job: (row.last_fire_at, row.last_state in UNFINISHED)
                for row in s.scalars(
                    select(JobState).where(
                        JobState.agent == state_agent(site, self.leadership.agent)
                    )
                )
            }
        self.runner.specs = {spec.key: spec for spec in specs}
        self.runner.retries = {}
        self.scheduler.remove_all_jobs()
        now, tz = datetime.now(UTC), local_zone()
        for spec in specs:
            last_fire, unfinished = last.get(spec.key, (None, False))
            first = first_fire(spec, last_fire, now, grace, tz, unfinished=unfinished)
            _explain(spec, first, now)
            if first.reason == "retry":
                self.runner.retries[spec.key] = first.at
            self.scheduler.add_job(
                self.runner.fire,
                trigger=make_trigger(spec, anchor=first.anchor, tz=tz),
                args=[spec.key],
                id=spec.key,
                name=spec.key,
                next_run_time=first.at,
                misfire_grace_time=max(1, int(grace)),
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
        return specs

    def _skipped(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("job %s: a firing was skipped: its previous run is still going", event.job_id)
        else:
            log.warning("job %s: a firing was missed by more than schedule.grace", event.job_id)

    def stop_scheduler(self) -> None:
        """No new firings from now on (running jobs go on until stopped)."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)


def _explain(spec: JobSpec, first: FirstFire, now: datetime) -> None:
    """Log where the job's timetable resumes (and any slot it will not run)."""
    if first.skipped is not None:
        log.warning(
            "job %s: the slot of %s was missed by more than schedule.grace; not run (next: %s)",
            spec.key,
            first.skipped.isoformat(timespec="seconds"),
            first.at.isoformat(timespec="seconds"),
        )
    elif first.reason == "retry":
        log.warning(
            "job %s: the run of the slot of %s did not finish (its daemon stopped or "
            "lost the lease); running it again once now",
            spec.key,
            first.at.isoformat(timespec="seconds"),
        )
    elif first.reason == "catch-up":
        log.info(
            "job %s: running the missed slot of %s once now",
            spec.key,
            first.at.isoformat(timespec="seconds"),
        )
    log.info(
        "job %s: %s, next %s",
        spec.key,
        describe(spec),
        max(first.at, now).isoformat(timespec="seconds"),
    )
