"""One firing of one job, from the scheduler's thread to the catalog.

For each firing (APScheduler calls :meth:`JobRunner.fire` in a worker thread):

1. check this daemon still leads its agent (the leadership lease and its fencing token,
   by the database's clock); a daemon that lost it runs nothing;
2. take the job's lease (``job:<site>:<agent>:<job>``): no two runs of a job overlap,
   whatever process they are in;
3. claim the firing in ``JobState`` (compare-and-set on its scheduled time): a firing
   another daemon already ran is not run again;
4. run the action in-process with ``Context(trigger="scheduler", fence=...)``: the fence
   re-checks both leases before each irreversible step;
5. record the outcome (``JobState``, the run's ``details.schedule``), ping, alert, count.

Nothing a job does, raises or is interrupted with escapes :meth:`fire`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from sqlalchemy import and_, func, or_, select, update

from drctl.actions.context import Context
from drctl.catalog.db import Catalog
from drctl.catalog.models import JobState, Run
from drctl.catalog.runs import RunHandle
from drctl.config import Settings
from drctl.errors import DrctlError, Interrupted
from drctl.notify.notifier import Notifier
from drctl.scheduler import alerting, lease
from drctl.scheduler.history import REPOSITORY_KINDS, state_agent
from drctl.scheduler.interrupt import DaemonStopping, LeaseLost, RunningJobs
from drctl.scheduler.jobs import JobSpec
from drctl.scheduler.metrics import Metrics
from drctl.scheduler.work import ACTIONS, Outcome

log = logging.getLogger(__name__)

_firing = threading.local()


class FiringExecutor(ThreadPoolExecutor):
    """APScheduler's thread pool, handing each firing's scheduled time to the job (the
    claim in the catalog is keyed on it)."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def call() -> list:
            _firing.at = run_times[-1]
            try:
                return run_job(job, job._jobstore_alias, run_times[-1:], self._logger.name)
            finally:
                _firing.at = None

        def done(future: concurrent.futures.Future) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(call).add_done_callback(done)


@dataclass
class Leadership:
    """What a runner needs to know about the daemon: who it is and the term it serves."""

    catalog: Catalog
    settings: Callable[[], Settings]
    agent: str
    holder: str
    token: int
    notifier: Notifier
    metrics: Metrics
    running: RunningJobs
    stopping: threading.Event
    on_lost: Callable[[str], None]  # the daemon steps down
    after_job: Callable[[], None] = lambda: None  # the watchdog refreshes metrics

    @property
    def leader_lease(self) -> str:
        return lease.leader_name(self.settings().controller.site, self.agent)


UNFINISHED = ("claimed", "interrupted")


def claim_firing(
    catalog: Catalog, site: str, spec: JobSpec, fire_at: datetime, *, retry: bool = False
) -> bool:
    """Record that ``spec`` fires for its slot ``fire_at``; False when this slot (or a later
    one) was already claimed. Slots of one job are at least a second apart; half a second
    absorbs rounding between daemons computing the same slot.

    With ``retry``, the newest slot may be claimed again when its run never finished
    (state ``claimed``: its daemon died or froze; ``interrupted``: stopped or fenced); the
    caller holds the job's lease, so whoever had claimed it is gone. A completed slot is
    never claimed twice."""
    tolerance = timedelta(seconds=min(0.5, (spec.interval_s or 60.0) / 2))
    agent = state_agent(site, spec.agent)
    same_slot = and_(
        JobState.last_fire_at > fire_at - tolerance,
        JobState.last_fire_at < fire_at + tolerance,
        JobState.last_state.in_(UNFINISHED),
    )
    with catalog.session() as s:
        lease.guard(s)
        lease.insert_ignore(s, JobState, {"agent": agent, "job": spec.key, "fires": 0})
        done = s.execute(
            update(JobState)
            .where(
                JobState.agent == agent,
                JobState.job == spec.key,
                or_(
                    JobState.last_fire_at.is_(None),
                    JobState.last_fire_at <= fire_at - tolerance,
                    and_(same_slot, retry),
                ),
            )
            .values(
                last_fire_at=fire_at,
                fires=JobState.fires + 1,
                last_state="claimed",
                last_run_id=None,
                last_ended_at=None,
            )
        ).rowcount
    return bool(done)


class JobRunner:
    """Runs the firings of one leadership term (see the module docstring)."""

    def __init__(self, term: Leadership, specs: dict[str, JobSpec]):
        self.term = term
        self.specs = specs
        # slots whose run did not finish under a previous daemon: run again once
        self.retries: dict[str, datetime] = {}

    def fire(self, key: str) -> None:
        """APScheduler's entry point for job ``key``. Never raises."""
        fire_at = (getattr(_firing, "at", None) or datetime.now(UTC)).astimezone(UTC)
        spec = self.specs.get(key)
        try:
            if spec is not None and not self.term.stopping.is_set():
                with self.term.running.firing():
                    self._fire(spec, fire_at)
        except BaseException as exc:  # the daemon outlives every job
            log.error(
                "job %s: %s: %s",
                key,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, DrctlError),
            )

    def _fire(self, spec: JobSpec, fire_at: datetime) -> None:
        term, settings = self.term, self.term.settings()
        site = settings.controller.site
        if lease.holds(term.catalog, {term.leader_lease: term.token}, term.holder):
            log.warning(
                "job %s: firing of %s not run: this daemon no longer leads agent %s",
                spec.key,
                fire_at.isoformat(timespec="seconds"),
                spec.agent,
            )
            term.on_lost("the leadership lease was lost (noticed before a job)")
            return
        name = lease.job_lease_name(site, spec.agent, spec.key)
        info = {"host": socket.gethostname(), "pid": os.getpid(), "fire_at": fire_at.isoformat()}
        token = lease.acquire(term.catalog, name, term.holder, settings.controller.lease_ttl, info)
        if token is None:
            log.warning(
                "job %s: firing of %s skipped: the job is still running (its lease is held)",
                spec.key,
                fire_at.isoformat(timespec="seconds"),
            )
            return
        try:
            retry = self.retries.pop(spec.key, None) == fire_at
            if not claim_firing(term.catalog, site, spec, fire_at, retry=retry):
                log.info(
                    "job %s: firing of %s already ran",
                    spec.key,
                    fire_at.isoformat(timespec="seconds"),
                )
                return
            self._run(spec, fire_at, name, token, settings)
        finally:
            lease.release(term.catalog, name, term.holder, token)

    def fence(self, spec: JobSpec, name: str, token: int) -> None:
        """Raise unless this daemon still holds its leadership and the job's lease."""
        term = self.term
        if term.stopping.is_set():
            raise DaemonStopping()
        lost = lease.holds(term.catalog, {term.leader_lease: term.token, name: token}, term.holder)
        if lost:
            term.on_lost(f"lease {', '.join(lost)} lost (noticed by job {spec.key})")
            raise LeaseLost(
                f"interrupted: this daemon lost {', '.join(lost)} (leadership "
                f"token {term.token}); {spec.key} stopped before its next step"
            )

    def _run(
        self, spec: JobSpec, fire_at: datetime, name: str, token: int, settings: Settings
    ) -> None:
        term = self.term
        ctx = FencedContext(
            settings=settings,
            catalog=term.catalog,
            trigger="scheduler",
            fence=lambda: self.fence(spec, name, token),
            agent=spec.agent,
        )
        with term.catalog.session() as s:
            before = s.scalar(select(func.max(Run.id))) or 0
        term.notifier.ping(spec.kind, "start")
        log.info("job %s: started (slot %s)", spec.key, fire_at.isoformat(timespec="seconds"))
        started = time.monotonic()
        outcome: Outcome | None = None
        try:
            with term.running.action(spec.key, name, token):
                ctx.check_fence()  # a daemon frozen since its checks above stops here
                outcome = ACTIONS[spec.kind](ctx, spec.target)
        except Interrupted as exc:
            outcome = outcome or Outcome("interrupted", str(exc) or "interrupted")
        except DrctlError as exc:
            outcome = Outcome("failed", str(exc))
        except Exception as exc:
            log.exception("job %s: internal error", spec.key)
            outcome = Outcome("failed", f"internal error: {type(exc).__name__}: {exc}")
        self._finish(spec, fire_at, outcome, before, time.monotonic() - started, token)

    def _finish(
        self,
        spec: JobSpec,
        fire_at: datetime,
        outcome: Outcome,
        before: int,
        duration: float,
        token: int,
    ) -> None:
        term = self.term
        site = term.settings().controller.site
        run_ids = tag_runs(
            term.catalog,
            spec,
            before,
            {
                "agent": spec.agent,
                "job": spec.key,
                "fire_at": fire_at.isoformat(),
                "leader_token": term.token,
                "job_token": token,
            },
            outcome,
        )
        if outcome.run_id is None and run_ids:
            outcome.run_id = run_ids[-1]
        record_state(term.catalog, site, spec, outcome)
        term.metrics.runs.labels(spec.agent, spec.kind, spec.target, outcome.state).inc()
        level = logging.INFO if outcome.state == "succeeded" else logging.WARNING
        log.log(
            level,
            "job %s: %s in %.1fs (run %s)%s",
            spec.key,
            outcome.state,
            duration,
            outcome.run_id,
            f": {outcome.reason}" if outcome.reason else "",
        )
        if outcome.state in ("succeeded", "warning"):
            term.notifier.ping(spec.kind, "success")
        elif outcome.state == "failed":
            term.notifier.ping(spec.kind, "fail", outcome.reason)
        self._alert(spec, outcome, site)
        term.after_job()

    def _alert(self, spec: JobSpec, outcome: Outcome, site: str) -> None:
        term = self.term
        alerts = alerting.specific_alerts(term.catalog, site, spec, outcome)
        episode = alerting.episode_alert(term.catalog, site, spec, outcome, quiet=bool(alerts))
        for alert in [*alerts, *([episode] if episode else [])]:
            term.metrics.alerts.labels(alert.kind).inc()
            term.notifier.alert(alert)


class FencedContext(Context):
    """The scheduler's context: the fence is checked again as soon as an action has
    recorded its run, before its first step (so a daemon frozen between the checks and the
    run record leaves an ``interrupted`` run, and does nothing)."""

    @contextlib.contextmanager
    def run(self, kind: str, **kw: Any) -> Iterator[RunHandle]:
        with super().run(kind, **kw) as handle:
            self.check_fence()
            yield handle


def record_state(catalog: Catalog, site: str, spec: JobSpec, outcome: Outcome) -> None:
    """The job's last run and state in ``JobState`` (its firing was claimed before)."""
    with catalog.session() as s:
        s.execute(
            update(JobState)
            .where(JobState.agent == state_agent(site, spec.agent), JobState.job == spec.key)
            .values(
                last_run_id=outcome.run_id,
                last_state=outcome.state,
                last_ended_at=datetime.now(UTC),
            )
        )


def tag_runs(
    catalog: Catalog, spec: JobSpec, after_id: int, schedule: dict, outcome: Outcome
) -> list[int]:
    """Write ``details.schedule`` into the runs this thread's job created (this process,
    trigger scheduler, the job's kind and target, id above ``after_id``); returns their
    ids in order. The job has ended: a run it left ``running`` (stopped before it could
    record its end) gets the outcome's final state now rather than when it is reaped."""
    target = Run.repository if spec.kind in REPOSITORY_KINDS else Run.node
    with catalog.session() as s:
        rows = s.scalars(
            select(Run)
            .where(
                Run.id > after_id,
                Run.pid == os.getpid(),
                Run.host == socket.gethostname(),
                Run.trigger == "scheduler",
                Run.kind == spec.kind,
                target == spec.target,
            )
            .order_by(Run.id)
        ).all()
        for row in rows:
            row.details = {**(row.details or {}), "schedule": schedule}
            if row.state == "running":
                row.state = outcome.state if outcome.state != "succeeded" else "interrupted"
                row.reason = row.reason or outcome.reason or "ended without recording its end"
                row.ended_at = datetime.now(UTC)
        return [row.id for row in rows]
