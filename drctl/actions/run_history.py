"""Runs as history: what drctl did, for ``drctl status`` and the site report.

Only reads the catalog. Run reasons may name study UIDs (vanished studies); callers that
publish them (the report) redact them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from drctl.actions.context import Context
from drctl.catalog.models import Run, Vanished
from drctl.catalog.queries import newest_runs
from drctl.catalog.runs import FINAL_STATES, run_outcome


def run_json(run: Run, now: datetime | None = None) -> dict:
    """A run as a plain record (never its details: they may name studies)."""
    doc = {
        "run_id": run.id,
        "kind": run.kind,
        "node": run.node,
        "repository": run.repository,
        **run_outcome(run),
    }
    if now is not None:
        last = run.ended_at or run.started_at
        doc["age_s"] = round(max(0.0, (now - last).total_seconds()), 3)
    return doc


def list_runs(
    ctx: Context,
    *,
    kinds: tuple[str, ...] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[Run]:
    """Finished runs of this site (of ``kinds``, started at or after ``since``), newest
    first, at most ``limit``."""
    with ctx.catalog.session() as s:
        query = select(Run).where(Run.site == ctx.site, Run.state.in_(FINAL_STATES))
        if kinds:
            query = query.where(Run.kind.in_(kinds))
        if since is not None:
            query = query.where(Run.started_at >= since)
        query = query.order_by(Run.id.desc())
        if limit:
            query = query.limit(limit)
        return list(s.scalars(query))


def count_runs(ctx: Context, *, since: datetime | None = None) -> dict[tuple[str, str], int]:
    """(kind, state) -> number of finished runs of this site since ``since``."""
    with ctx.catalog.session() as s:
        query = select(Run.kind, Run.state, func.count()).where(
            Run.site == ctx.site, Run.state.in_(FINAL_STATES)
        )
        if since is not None:
            query = query.where(Run.started_at >= since)
        rows = s.execute(query.group_by(Run.kind, Run.state)).all()
    return {(kind, state): int(n) for kind, state, n in rows}


def latest_runs(ctx: Context, kinds: tuple[str, ...] | None = None) -> list[Run]:
    """The newest run of each (kind, node, repository) of this site."""
    with ctx.catalog.session() as s:
        return newest_runs(s, ctx.site, kinds)


def unacknowledged_vanished(ctx: Context) -> dict[str, int]:
    """Per node, how many vanished studies nobody acknowledged yet."""
    with ctx.catalog.session() as s:
        rows = s.execute(
            select(Vanished.node, func.count())
            .where(Vanished.site == ctx.site, Vanished.acked_at.is_(None))
            .group_by(Vanished.node)
        ).all()
    return {node: int(n) for node, n in rows}
