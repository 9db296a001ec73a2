"""Job kinds -> the same actions the CLI runs, and what their results mean to the
scheduler (:class:`Outcome`). Actions are imported when a job runs, so the daemon starts
fast and an action being changed by someone else cannot break the daemon's start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drctl.actions.context import Context


@dataclass
class Outcome:
    """How a job ended: the run's state and reason, its run id, and what alerts and
    metrics need (``vanished`` study UIDs, ``drill`` facts, ...)."""

    state: str  # succeeded | warning | failed | interrupted
    reason: str | None = None
    run_id: int | None = None
    details: dict = field(default_factory=dict)
    vanished: list[str] = field(default_factory=list)
    drill: dict | None = None

    @property
    def failing(self) -> bool:
        return self.state in ("failed", "warning")


def _backup(ctx: Context, node: str) -> Outcome:
    from drctl.actions.backup import run_backup

    r = run_backup(ctx, node)
    return Outcome(
        r.state,
        r.reason,
        r.run_id,
        {
            "snapshot_id": r.snapshot_id,
            "bytes_added": r.bytes_added,
            "duration_s": round(r.duration_s, 3),
        },
        vanished=list(r.unacknowledged_vanished),
    )


def _index_copy(ctx: Context, node: str) -> Outcome:
    from drctl.actions.indexcopy import run_index_copy

    r = run_index_copy(ctx, node)
    return Outcome(
        r.get("state", "succeeded"),
        None,
        r.get("run_id"),
        {"record_id": r.get("record_id"), "bytes": r.get("bytes")},
    )


def _replicate(ctx: Context, standby: str) -> Outcome:
    from drctl.actions.replicate import run_replicate

    r = run_replicate(ctx, standby)
    return Outcome(
        r.state, r.reason, r.run_id, {"lag_s": r.lag_s, "bytes": r.bytes, "paused": r.paused}
    )


def _check(ctx: Context, repository: str) -> Outcome:
    from drctl.actions.check import run_check

    r = run_check(ctx, repository)
    return Outcome(
        "succeeded" if r.ok else "failed",
        r.error,
        r.run_id,
        {"subset": r.subset, "duration_s": round(r.duration_s, 3)},
    )


def _prune(ctx: Context, repository: str) -> Outcome:
    from drctl.actions.prune import run_prune

    plan = run_prune(ctx, repository)
    if plan.refusals:
        return Outcome(
            "failed",
            "prune refused: " + "; ".join(plan.refusals),
            details={"remove": len(plan.remove)},
        )
    return Outcome("succeeded", None, details={"removed": len(plan.remove)})


def _drill(ctx: Context, primary: str) -> Outcome:
    from drctl.actions.drill import DrillOptions, run_drill

    report = run_drill(ctx, DrillOptions(node=primary))
    facts = {
        "drill_id": report.drill_id,
        "verdict": report.verdict,
        "snapshot_id": report.snapshot_id,
        "standby": report.standby,
        "rto_s": report.rto_s,
        "rpo_s": report.rpo_s,
        "findings": len(report.findings),
        "report": report.report_path,
    }
    state = "succeeded" if report.verdict == "passed" else "failed"
    return Outcome(state, report.reason, report.run_id, facts, drill=facts)


ACTIONS: dict[str, Callable[[Context, str], Outcome]] = {
    "backup": _backup,
    "index_copy": _index_copy,
    "replicate": _replicate,
    "check": _check,
    "prune": _prune,
    "drill": _drill,
}
