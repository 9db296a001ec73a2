"""The evidence of a drill: its catalog rows (drill, findings, the snapshot's verified
mark; the run itself is audited), its verification record and a copy of its report in the
repository (``catalog rebuild`` and ``prune`` read them), and the report files.

Every drill is recorded, also one that could not start (``aborted``) or was interrupted,
with why.
"""

from __future__ import annotations

import logging
import platform
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from drctl import __version__
from drctl.actions.context import Context
from drctl.catalog.models import Drill, Finding, Record, Snapshot
from drctl.drill.findings import verdict
from drctl.errors import DrctlError
from drctl.reports import html as report_html
from drctl.reports.model import DrillReport, redacted
from drctl.restic.argv import restic_host
from drctl.verify import records

log = logging.getLogger(__name__)


def start_drill(ctx: Context, run_id: int, node: str, repository: str, target: str) -> int:
    """A ``running`` drill row (its snapshot is set once picked); returns its ID."""
    with ctx.catalog.session() as s:
        row = Drill(
            run_id=run_id,
            site=ctx.site,
            node=node,
            repository=repository,
            snapshot_id=None,
            standby=target,
            scope="-",
            verdict="running",
            started_at=datetime.now(UTC),
            studies_expected=0,
            details={},
        )
        s.add(row)
        s.flush()
        return row.id


def set_snapshot(ctx: Context, drill_id: int, snapshot) -> None:
    with ctx.catalog.session() as s:
        s.execute(
            update(Drill)
            .where(Drill.id == drill_id)
            .values(snapshot_id=snapshot.snapshot_id, studies_expected=snapshot.studies or 0)
        )


def abort_early(ctx: Context, drill_id: int, reason: str) -> None:
    """Record a drill that could not even pick its snapshot."""
    with ctx.catalog.session() as s:
        s.execute(
            update(Drill)
            .where(Drill.id == drill_id)
            .values(verdict="aborted", ended_at=datetime.now(UTC), details={"reason": reason})
        )


def end_without_verdict(ctx: Context, state, verdict_: str, reason: str) -> None:
    """Record a drill that ended before a verdict (aborted, interrupted, internal error),
    with its findings so far."""
    now = datetime.now(UTC)
    with ctx.catalog.session() as s:
        s.execute(
            update(Drill)
            .where(Drill.id == state.drill_id)
            .values(
                verdict=verdict_,
                ended_at=now,
                phases=state.clock.to_json(),
                scope=state.plan.scope if state.plan else "-",
                details={"reason": reason, "notes": state.notes},
            )
        )
        _findings(s, state, now)


def _findings(s, state, now: datetime) -> None:
    for f in state.findings:
        s.add(
            Finding(
                run_id=state.run.id,
                drill_id=state.drill_id,
                kind=f.kind,
                study_uid=f.study_uid,
                detail=f.detail,
                at=now,
            )
        )


def tool_versions(state) -> dict:
    from drctl.restic.runner import restic_version

    try:
        restic = restic_version().text
    except DrctlError as exc:
        restic = f"unknown ({exc})"
    import pydicom
    import pynetdicom

    return {
        "drctl": __version__,
        "restic": restic,
        "PACS (restored node)": state.versions.get("pacs"),
        "python": platform.python_version(),
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
    }


def build_report(ctx: Context, state) -> DrillReport:
    """The report of a finished drill (verdict from its findings)."""
    snap = state.snapshot
    plan = state.plan
    reason = None
    failing = [f for f in state.findings if f.failing]
    if failing:
        kinds = sorted({f.kind for f in failing})
        reason = f"{len(failing)} finding(s): {', '.join(kinds)}"
    return DrillReport(
        drill_id=state.drill_id,
        run_id=state.run.id,
        site=ctx.site,
        node=state.primary,
        repository=state.repository,
        snapshot_id=snap.snapshot_id,
        snapshot_time=snap.time.isoformat(),
        pair_time=snap.pair_time.isoformat() if snap.pair_time else None,
        snapshot_status=snap.status,
        standby=state.target,
        target=state.target_info,
        scope=plan.scope if plan else "-",
        scope_reason=plan.scope_reason if plan else "",
        verdict=verdict(state.findings),
        started_at=state.clock.started_at.isoformat(),
        ended_at=datetime.now(UTC).isoformat(),
        studies_expected=len(state.studies),
        studies_verified=state.studies_verified,
        studies_restored=len(state.restored_studies),
        instances_sampled=state.layers["served"].checked if "served" in state.layers else 0,
        rto_s=state.rto_s,
        rto_projected=state.rto_projected,
        rto_measured_s=state.rto_measured_s,
        max_rto=ctx.settings.drill.max_rto,
        rpo_s=state.rpo_s,
        rpo_basis=state.rpo_basis,
        max_rpo=ctx.settings.drill.max_rpo,
        phases=state.clock.to_json(),
        layers={name: layer.to_json() for name, layer in state.layers.items()},
        findings=[f.to_json() for f in state.findings],
        tools=tool_versions(state),
        seed=state.seed,
        reason=reason,
        notes=list(state.notes),
    )


def finish(ctx: Context, state) -> DrillReport:
    """Record the drill in the catalog, write the verification record, the report files
    and the report copy; returns the report (paths and record ID filled in)."""
    report = build_report(ctx, state)
    ended = datetime.fromisoformat(report.ended_at)
    with ctx.catalog.session() as s:
        s.execute(
            update(Drill)
            .where(Drill.id == state.drill_id)
            .values(
                scope=report.scope,
                verdict=report.verdict,
                ended_at=ended,
                studies_expected=report.studies_expected,
                studies_verified=report.studies_verified,
                instances_sampled=report.instances_sampled,
                rto_s=report.rto_s,
                rto_projected=report.rto_projected,
                rpo_s=report.rpo_s,
                phases=report.phases,
            )
        )
        _findings(s, state, ended)
        if report.verdict == "passed":
            s.execute(
                update(Snapshot)
                .where(Snapshot.id == state.snapshot.id)
                .values(verified_at=ended, verified_drill_id=state.drill_id)
            )
    report.record_id = _verification_record(ctx, state, report)
    html_path, json_path = report_paths(ctx, report, state.options.report)
    report.report_path, report.json_path = str(html_path), str(json_path)
    shown = redacted(report) if ctx.settings.reports.redact_uids else report
    html_text, _ = report_html.write_files(shown, html_path, json_path)
    report_record = _report_copy(ctx, state, report, html_text)
    with ctx.catalog.session() as s:
        s.execute(
            update(Drill)
            .where(Drill.id == state.drill_id)
            .values(
                record_id=report.record_id,
                report_path=report.report_path,
                details={"report": report.to_json(), "report_record": report_record},
            )
        )
    return report


def report_paths(ctx: Context, report: DrillReport, requested: Path | None) -> tuple[Path, Path]:
    if requested is not None:
        return report_html.paths_for(Path(requested))
    folder = (
        ctx.settings.drill.report_dir
        or ctx.settings.reports.dir
        or ctx.settings.controller.state_dir / "reports"
    )
    return report_html.default_paths(Path(folder), report)


def verification_document(ctx: Context, state, report: DrillReport) -> dict:
    """The verification record (format drctl-verification/1, read by catalog rebuild)."""
    keys = (
        "standby",
        "scope",
        "verdict",
        "started_at",
        "ended_at",
        "studies_expected",
        "studies_verified",
        "instances_sampled",
        "rto_s",
        "rto_projected",
        "rpo_s",
        "phases",
    )
    drill = {k: getattr(report, k) for k in keys}
    drill.update(
        {
            "drill_id": state.drill_id,
            "rpo_basis": report.rpo_basis,
            "studies_restored": report.studies_restored,
            "seed": report.seed,
            "layers": report.layers,
            "tools": report.tools,
        }
    )
    return {
        "format": records.FORMAT_VERIFICATION,
        "site": ctx.site,
        "node": state.primary,
        "repository": state.repository,
        "snapshot_id": state.snapshot.snapshot_id,
        "drill": drill,
        "findings": [
            {"kind": f.kind, "study_uid": f.study_uid, "detail": f.detail} for f in state.findings
        ],
    }


def _verification_record(ctx: Context, state, report: DrillReport) -> str | None:
    document = verification_document(ctx, state, report)
    return _store(
        ctx,
        state,
        "verification",
        records.encode(document),
        records.record_filename("verification", state.primary),
    )


def _report_copy(ctx: Context, state, report: DrillReport, html_text: str) -> str | None:
    return _store(
        ctx,
        state,
        "report",
        html_text.encode("utf-8"),
        records.record_filename("report", state.primary, "html"),
    )


def _store(ctx: Context, state, kind: str, data: bytes, filename: str) -> str | None:
    """A drctl record in the repository and its catalog row; None (and a note) when the
    repository refused it: the drill's outcome stands, but rebuild will not see it."""
    try:
        snap = state.restic.backup_bytes(
            data,
            filename=filename,
            host=restic_host(ctx.site, state.primary),
            tags=records.record_tags(
                kind,
                site=ctx.site,
                node=state.primary,
                snapshot=state.snapshot.short_id,
                drill=state.drill_id,
            ),
        )
    except DrctlError as exc:
        log.error("drill %d: %s record not written: %s", state.drill_id, kind, exc)
        state.notes.append(f"{kind} record not written to the repository: {exc}")
        return None
    with ctx.catalog.session() as s:
        s.add(
            Record(
                repository=state.repository,
                record_id=snap.id,
                kind=kind,
                site=ctx.site,
                node=state.primary,
                refers_to=state.snapshot.snapshot_id,
                time=snap.time,
            )
        )
    return snap.id
