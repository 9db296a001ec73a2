"""``drctl replicate run``: bring a standby's index up to date with its primary (or, for a
streaming replica, measure how far behind it is), run by the standby's agent.

Every replication is a run (kind ``replicate``) and, when it changed or measured the
standby's index, a ``Replication`` row: bytes, duration, source position (change sequence
or WAL LSN), source time, and the lag it leaves. While a circuit breaker (mass deletion,
mass modification) of the primary is open, replication pauses: the run is recorded as
failed and nothing is copied, unless ``force`` (recorded in the audit trail).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drctl import locks
from drctl.actions.alarms import open_alarms
from drctl.actions.context import Context
from drctl.actions.replicate_pg import replicate_dump, replicate_streaming
from drctl.actions.replicate_sqlite import replicate_sqlite
from drctl.actions.replication_plan import (
    Applied,
    Plan,
    copy_lag,
    plan_for,
    primary_changed,
    primary_position,
)
from drctl.catalog import audit
from drctl.catalog.models import Replication
from drctl.errors import JobFailed
from drctl.pacs.base import pacs_node

log = logging.getLogger(__name__)


def _sqlite(ctx: Context, plan: Plan, run, fresh: bool) -> Applied:
    return replicate_sqlite(ctx, plan, run, fresh=fresh)


def _dump(ctx: Context, plan: Plan, run, fresh: bool) -> Applied:
    return replicate_dump(ctx, plan, run, fresh=fresh)


def _streaming(ctx: Context, plan: Plan, run, fresh: bool) -> Applied:
    return replicate_streaming(ctx, plan, run)


MODES: dict[str, Callable[[Context, Plan, object, bool], Applied]] = {
    "sqlite": _sqlite,
    "dump": _dump,
    "streaming": _streaming,
}


@dataclass
class ReplicationResult:
    run_id: int | None
    standby: str
    primary: str
    mode: str
    state: str = "running"
    reason: str | None = None
    position: str | None = None
    source_time: datetime | None = None
    bytes: int = 0
    duration_s: float = 0.0
    outage_s: float | None = None
    lag_s: float | None = None
    lag_bytes: int | None = None
    studies: int | None = None
    skipped: bool = False
    paused: bool = False
    forced: bool = False
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "standby": self.standby,
            "primary": self.primary,
            "mode": self.mode,
            "state": self.state,
            "reason": self.reason,
            "position": self.position,
            "source_time": self.source_time.isoformat() if self.source_time else None,
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "outage_s": round(self.outage_s, 3) if self.outage_s is not None else None,
            "lag_s": round(self.lag_s, 3) if self.lag_s is not None else None,
            "lag_bytes": self.lag_bytes,
            "studies": self.studies,
            "skipped": self.skipped,
            "paused": self.paused,
            "forced": self.forced,
            "details": self.details,
        }


def run_replicate(
    ctx: Context, standby: str, *, fresh: bool = False, force: bool = False
) -> ReplicationResult:
    """Replicate to ``standby``. Returns the result (state succeeded, warning or failed:
    a failure that leaves the standby on its previous index is a result, not an error).
    Raises UsageError (configuration), LockTimeout (already running), UnavailableError
    (a node, database or repository unreachable) and Interrupted."""
    plan = plan_for(ctx.settings, standby)
    result = ReplicationResult(None, standby, plan.primary, plan.mode)
    lock = locks.lock_path(
        ctx.settings.controller.state_dir / "locks", "node", f"{ctx.site}/{standby}"
    )
    with locks.try_hold(lock, what=f"replication to standby {standby}"):
        try:
            with ctx.run(
                "replicate",
                node=standby,
                repository=_repository(ctx, plan),
                details={"primary": plan.primary, "mode": plan.mode},
            ) as run:
                result.run_id = run.id
                started = time.monotonic()
                try:
                    _replicate(ctx, plan, run, result, fresh=fresh, force=force, started=started)
                finally:
                    result.duration_s = time.monotonic() - started
                    run.details.update(result.to_json())
                result.state = "succeeded" if run.state == "running" else run.state
                result.reason = run.reason
        except JobFailed as exc:
            result.state, result.reason = "failed", str(exc)
    return result


def _repository(ctx: Context, plan: Plan) -> str | None:
    return ctx.settings.repository_of(plan.primary) if plan.mode == "sqlite" else None


def _replicate(
    ctx: Context,
    plan: Plan,
    run,
    result: ReplicationResult,
    *,
    fresh: bool,
    force: bool,
    started: float,
) -> None:
    alarms = open_alarms(ctx, plan.primary)
    if alarms and plan.mode != "streaming" and not _gate(ctx, plan, run, result, alarms, force):
        return
    applied = MODES[plan.mode](ctx, plan, run, fresh)
    if plan.mode != "streaming" and not applied.skipped:
        primary = pacs_node(ctx.settings, plan.primary)
        current = primary_position(primary)
        changed = primary_changed(primary, applied.position, current)
        applied.lag_s = copy_lag(applied.source_time, changed)
        applied.details["primary_position"] = current
    _fill(result, applied)
    if not applied.skipped:
        _record(ctx, plan, run.id, applied, time.monotonic() - started)
    if alarms and plan.mode == "streaming":
        run.escalate(
            "warning",
            f"circuit breaker open on {plan.primary}: a streaming replica "
            "cannot be paused by drctl; the change reaches the standby",
        )
    if applied.warning:
        run.escalate("warning", applied.warning)


def _gate(
    ctx: Context, plan: Plan, run, result: ReplicationResult, alarms: list[dict], force: bool
) -> bool:
    """Open circuit breakers of the primary pause the replication (the run fails with the
    reason) unless ``force``, which is audited. Returns whether to go on."""
    if not force:
        result.paused = True
        details = "; ".join(f"{a['kind']}: {a['detail']}" for a in alarms)
        run.finish(
            "failed",
            f"paused: circuit breaker open on {plan.primary} ({details}); "
            "close it with `drctl alarms ack` or replicate with --force",
        )
        return False
    result.forced = True
    with ctx.catalog.session() as s:
        audit.append(
            s,
            "replicate run --force",
            run_id=run.id,
            result="forced",
            target=f"{plan.standby} despite {len(alarms)} open alarm(s) of {plan.primary}",
        )
    return True


def _fill(result: ReplicationResult, applied: Applied) -> None:
    result.position, result.source_time = applied.position, applied.source_time
    result.bytes, result.studies = applied.bytes, applied.studies
    result.outage_s, result.lag_s, result.lag_bytes = (
        applied.outage_s,
        applied.lag_s,
        applied.lag_bytes,
    )
    result.skipped = applied.skipped is not None
    result.details.update(applied.details)
    if applied.skipped:
        result.details["skipped"] = applied.skipped


def _record(ctx: Context, plan: Plan, run_id: int, applied: Applied, duration: float) -> None:
    with ctx.catalog.session() as s:
        s.add(
            Replication(
                run_id=run_id,
                site=ctx.site,
                standby=plan.standby,
                source=plan.primary,
                mode=plan.mode,
                finished_at=datetime.now(UTC),
                source_time=applied.source_time,
                position=applied.position,
                bytes=applied.bytes,
                duration_s=duration,
                lag_bytes=applied.lag_bytes,
                lag_s=applied.lag_s,
                studies=applied.studies,
                index_copy_id=applied.index_copy_id,
            )
        )
