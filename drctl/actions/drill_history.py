"""``drctl drill list`` and ``drctl drill show``: drill history from the catalog."""

from __future__ import annotations

from sqlalchemy import func, select

from drctl.actions.context import Context
from drctl.catalog.models import Drill, Finding
from drctl.errors import UsageError


def _summary(row: Drill, findings: int) -> dict:
    report = (row.details or {}).get("report") or {}
    return {
        "drill_id": row.id,
        "run_id": row.run_id,
        "started_at": row.started_at.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "node": row.node,
        "repository": row.repository,
        "snapshot_id": row.snapshot_id,
        "standby": row.standby,
        "scope": row.scope,
        "state": row.verdict,
        "studies_expected": row.studies_expected,
        "studies_verified": row.studies_verified,
        "instances_sampled": row.instances_sampled,
        "findings": findings,
        "rto_s": row.rto_s,
        "rto_projected": row.rto_projected,
        "rpo_s": row.rpo_s,
        "report": row.report_path,
        "record_id": row.record_id,
        "reason": report.get("reason") or (row.details or {}).get("reason"),
    }


def list_drills(ctx: Context, *, node: str | None = None, limit: int = 50) -> list[dict]:
    """The newest ``limit`` drills of this site, newest first."""
    with ctx.catalog.session() as s:
        query = select(Drill).where(Drill.site == ctx.site)
        if node:
            query = query.where(Drill.node == node)
        rows = list(s.scalars(query.order_by(Drill.id.desc()).limit(limit)))
        counts = dict(
            s.execute(
                select(Finding.drill_id, func.count())
                .where(Finding.drill_id.in_([r.id for r in rows]))
                .group_by(Finding.drill_id)
            ).all()
        )
    return [_summary(r, counts.get(r.id, 0)) for r in rows]


def _finding(f: Finding) -> dict:
    return {"kind": f.kind, "study_uid": f.study_uid, "detail": f.detail}


def drill_findings(ctx: Context, drill_ids: list[int]) -> dict[int, list[dict]]:
    """The findings of each of ``drill_ids`` (as in ``show_drill``, in the same order), in
    one query; a drill without findings is left out."""
    found: dict[int, list[dict]] = {}
    if not drill_ids:
        return found
    with ctx.catalog.session() as s:
        rows = s.scalars(
            select(Finding).where(Finding.drill_id.in_(drill_ids)).order_by(Finding.id)
        )
        for f in rows:
            found.setdefault(f.drill_id, []).append(_finding(f))
    return found


def show_drill(ctx: Context, drill_id: int) -> dict:
    """One drill with its findings and phases (cli.md's drill document, from the
    catalog). UsageError when there is no such drill."""
    with ctx.catalog.session() as s:
        row = s.get(Drill, drill_id)
        if row is None or row.site != ctx.site:
            raise UsageError(f"no drill {drill_id} in the catalog", hint="see `drctl drill list`")
        findings = list(
            s.scalars(select(Finding).where(Finding.drill_id == drill_id).order_by(Finding.id))
        )
    document = _summary(row, len(findings))
    report = (row.details or {}).get("report") or {}
    document.update({k: v for k, v in report.items() if k not in document})
    document["findings"] = [_finding(f) for f in findings]
    document["phases"] = row.phases or {}
    if (row.details or {}).get("rebuilt"):
        document["rebuilt_from_repository"] = True
    return document
