"""``drctl report``: the site report of a period, from the catalog, written as one
self-contained HTML page (and returned as a record for ``--json``).

Gathers with the same functions as ``drctl status``, ``snapshots list``, ``drill list``
and ``drill show``; :mod:`drctl.reports.site` shapes the record and
:mod:`drctl.reports.site_html` draws the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from drctl.actions.context import Context
from drctl.actions.drill_history import drill_findings, list_drills
from drctl.actions.run_history import count_runs, list_runs, run_json
from drctl.actions.snapshots import list_snapshots
from drctl.actions.status import SiteStatus
from drctl.reports import site, site_html

DRILLS_MAX = 200  # newest drills of the period shown with their findings
RUNS_MAX = 30  # newest backup and check runs listed
assert site.RUNS_SHOWN <= RUNS_MAX  # the evidence's newest runs are the lists' heads
EVIDENCE_KINDS = sorted({kind for req in site.HIPAA_7 for kind in req.kinds})


def report_folder(ctx: Context) -> Path:
    """``reports.dir``, else ``<data_dir>/reports``."""
    return Path(ctx.settings.reports.dir or ctx.settings.controller.state_dir / "reports")


def build_report(
    ctx: Context, status: SiteStatus, *, since: datetime | None = None
) -> site.SiteReport:
    """The report of this site from ``since`` (everything when None) until now; the
    verdict is ``status``'s (what ``drctl status`` says now)."""
    now = status.now
    drills = [
        d
        for d in list_drills(ctx, limit=DRILLS_MAX)
        if d["state"] != "running" and (since is None or _t(d["started_at"]) >= since)
    ]
    findings = drill_findings(ctx, [d["drill_id"] for d in drills if d["findings"]])
    for d in drills:
        d["findings"] = findings.get(d["drill_id"], [])
    checks = [run_json(r) for r in list_runs(ctx, kinds=("check",), since=since, limit=RUNS_MAX)]
    backups = [run_json(r) for r in list_runs(ctx, kinds=("backup",), since=since, limit=RUNS_MAX)]
    listed = {"check": checks, "backup": backups}

    def newest(kind: str) -> list[dict]:
        """The newest runs of ``kind`` the evidence shows (the head of a list above)."""
        if kind in listed:
            return listed[kind][: site.RUNS_SHOWN]
        return [
            run_json(r) for r in list_runs(ctx, kinds=(kind,), since=since, limit=site.RUNS_SHOWN)
        ]

    runs = {kind: newest(kind) for kind in EVIDENCE_KINDS}
    inputs = site.Inputs(
        site=ctx.site,
        now=now,
        since=since,
        status=status.to_json(),
        snapshots=[s.to_json() for s in list_snapshots(ctx, include_forgotten=True)],
        drills=drills,
        checks=checks,
        backups=backups,
        runs=runs,
        counts=count_runs(ctx, since=since),
        redact_uids=ctx.settings.reports.redact_uids,
    )
    return site.build(inputs)


def write_report(ctx: Context, report: site.SiteReport, out: Path | None = None) -> Path:
    """Write the page to ``out`` (default: the report folder) and return its path."""
    path = out or report_folder(ctx) / site_html.default_name(report)
    report.report_path = str(path)
    site_html.write(report, path)
    return path


def _t(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
