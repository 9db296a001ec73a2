"""Circuit-breaker alarms (mass deletion, mass modification): while one is open for a
site, prune and replication pause. A person closes it with a reason."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from drctl.actions.context import Context
from drctl.catalog import audit
from drctl.catalog.models import Alarm
from drctl.catalog.runs import current_user
from drctl.errors import UsageError


def alarm_json(a: Alarm) -> dict:
    return {"id": a.id, "node": a.node, "kind": a.kind, "detail": a.detail, "run_id": a.run_id,
            "opened_at": a.opened_at.isoformat(),
            "closed_at": a.closed_at.isoformat() if a.closed_at else None,
            "closed_by": a.closed_by, "close_reason": a.close_reason}


def list_alarms(ctx: Context, *, include_closed: bool = False) -> list[dict]:
    with ctx.catalog.session() as s:
        query = select(Alarm).where(Alarm.site == ctx.site)
        if not include_closed:
            query = query.where(Alarm.closed_at.is_(None))
        return [alarm_json(a) for a in s.scalars(query.order_by(Alarm.id))]


def open_alarms(ctx: Context, node: str | None = None) -> list[dict]:
    return [a for a in list_alarms(ctx) if node is None or a["node"] == node]


def ack_alarm(ctx: Context, alarm_id: int, reason: str) -> dict:
    """Close an open alarm after a person checked the node. Recorded in the audit trail."""
    if not reason.strip():
        raise UsageError("--reason is required: say what was checked")
    with ctx.catalog.session() as s:
        alarm = s.get(Alarm, alarm_id)
        if alarm is None or alarm.site != ctx.site:
            raise UsageError(f"no alarm {alarm_id} (see `drctl alarms list`)")
        if alarm.closed_at is None:
            alarm.closed_at = datetime.now(UTC)
            alarm.closed_by = current_user()
            alarm.close_reason = reason
        audit.append(s, "alarms ack", target=f"alarm {alarm_id} ({alarm.node}: {alarm.kind})",
                     result="closed")
        return alarm_json(alarm)
