"""``drctl drill run|list|show``: restore drills.

Exit codes of ``drill run``: 0 passed; 1 failed (any finding, including
standby_unreachable, restore_failed, repository_damaged, rto_exceeded, rpo_exceeded);
2 usage or configuration error; 3 could not start (repository or catalog unreachable; the
drill is recorded as aborted); 130 interrupted (recorded as interrupted, sandbox removed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from drctl.actions.drill import DrillOptions, run_drill
from drctl.actions.drill_history import list_drills, show_drill
from drctl.cli.render import human_bytes, short_time, state, table
from drctl.config import format_duration

LABELS = {
    "check": "checking the repository",
    "restore": "restoring",
    "start": "starting the restored node",
    "verify": "verifying over DICOM",
    "cleanup": "stopping and removing the restored node",
    "record": "recording the evidence",
}


@click.group("drill")
def drill_group():
    """Restore drills: prove that a snapshot restores to a working PACS."""


@contextlib.contextmanager
def drill_progress(app) -> Iterator:
    """A callback (phase, done, total) feeding a rich progress line, or None."""
    if not app.show_progress:
        yield None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[size]}"),
        console=app.err,
        transient=True,
    )
    tasks: dict[str, int] = {}

    def update(phase: str, done: int | None, total: int | None) -> None:
        if phase not in tasks:  # one line per phase; the previous one is hidden
            for task in tasks.values():
                progress.update(task, visible=False)
            tasks[phase] = progress.add_task(LABELS.get(phase, phase), total=None, size="")
        if phase == "restore" and done is not None:
            size = f"{human_bytes(done)}" + (f" of {human_bytes(total)}" if total else "")
            progress.update(tasks[phase], completed=done, total=total, size=size)

    with progress:
        yield update


@drill_group.command("run")
@click.option(
    "--snapshot",
    "snapshot",
    metavar="ID",
    help="Snapshot ID or 'latest' (default: the newest complete snapshot of the node).",
)
@click.option(
    "--node",
    help="Primary whose snapshot is drilled (default: the only primary, or the standby's primary).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Restore into a throwaway Orthanc (default unless drill.mode names a standby).",
)
@click.option("--standby", metavar="NAME", help="Restore onto this standby node.")
@click.option("--full", "scope", flag_value="full", help="Restore every file.")
@click.option(
    "--partial",
    "scope",
    flag_value="partial",
    help="Restore the index and the sampled studies' files; RTO is projected.",
)
@click.option(
    "--sample",
    "sample",
    type=click.IntRange(min=1),
    metavar="N",
    help="Studies sampled for instance-level checks (and restored when partial).",
)
@click.option(
    "--sample-instances",
    type=click.IntRange(min=0),
    metavar="N",
    help="Instances fetched by C-GET and hashed.",
)
@click.option(
    "--verify-all",
    is_flag=True,
    default=None,
    help="Hash every restored file and fetch every restored instance.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Where to write the HTML report (the JSON goes beside it).",
)
@click.pass_obj
def run_cmd(
    app, snapshot, node, sandbox, standby, scope, sample, sample_instances, verify_all, report
):
    """Restore a snapshot, start it, verify every study over DICOM, record RTO/RPO and
    write the report. Exit 0 passed, 1 findings, 3 could not start."""
    ctx = app.context()
    options = DrillOptions(
        snapshot=snapshot,
        node=node,
        standby=standby,
        sandbox=sandbox,
        scope=scope,
        sample_studies=sample,
        sample_instances=sample_instances,
        verify_all=verify_all,
        report=report,
    )
    with drill_progress(app) as on_progress:
        options.on_progress = on_progress
        result = run_drill(ctx, options)
    payload = result.to_json()

    def render(out):
        rto = format_duration(result.rto_s) + (" (projected)" if result.rto_projected else "")
        out.print(
            f"drill {result.drill_id}: {state(result.verdict)} - snapshot "
            f"{(result.snapshot_id or '-')[:8]} of {result.node} on {result.standby} "
            f"({result.scope})"
        )
        out.print(
            f"  {result.studies_verified} of {result.studies_expected} studies verified; "
            f"{result.instances_sampled} instances fetched; RTO {rto} (target "
            f"{format_duration(result.max_rto)}), RPO {format_duration(result.rpo_s)} "
            f"(target {format_duration(result.max_rpo)})"
        )
        for f in result.findings:
            colour = "yellow" if f["kind"] == "extra_study" else "red"
            out.print(f"  [{colour}]{f['kind']}[/] {f.get('study_uid') or ''} {f['detail']}")
        out.print(f"  report: {result.report_path}", soft_wrap=True)

    app.emit(payload, render)
    return 0 if result.verdict == "passed" else 1


@drill_group.command("list")
@click.option("--node", help="Only drills of this primary.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_obj
def list_cmd(app, node, limit):
    """Drill history, newest first."""
    rows = list_drills(app.context(), node=node, limit=limit)

    def render(out):
        t = table(
            "drill",
            "started",
            "node",
            "snapshot",
            "on",
            "scope",
            "state",
            "verified",
            "findings",
            "RTO",
            "RPO",
        )
        for r in rows:
            rto = format_duration(r["rto_s"]) + ("*" if r["rto_projected"] else "")
            t.add_row(
                str(r["drill_id"]),
                short_time(r["started_at"]),
                r["node"],
                (r["snapshot_id"] or "-")[:8],
                r["standby"],
                r["scope"],
                state(r["state"]),
                f"{r['studies_verified']}/{r['studies_expected']}",
                str(r["findings"]),
                rto,
                format_duration(r["rpo_s"]),
            )
        out.print(t if rows else "no drills yet")

    app.emit(rows, render)
    return 0


@drill_group.command("show")
@click.argument("drill_id", type=int)
@click.pass_obj
def show_cmd(app, drill_id):
    """One drill with its findings."""
    doc = show_drill(app.context(), drill_id)

    def render(out):
        out.print(
            f"drill {doc['drill_id']}: {state(doc['state'])} - snapshot "
            f"{(doc['snapshot_id'] or '-')[:8]} of {doc['node']} on {doc['standby']} "
            f"({doc['scope']}), {short_time(doc['started_at'])}"
        )
        out.print(
            f"  {doc['studies_verified']} of {doc['studies_expected']} studies verified; "
            f"RTO {format_duration(doc['rto_s'])}"
            f"{' (projected)' if doc['rto_projected'] else ''}, "
            f"RPO {format_duration(doc['rpo_s'])}"
        )
        if doc.get("reason"):
            out.print(f"  {doc['reason']}")
        for name, phase in (doc.get("phases") or {}).items():
            out.print(
                f"  {name}: {format_duration(phase.get('duration_s'))}"
                f"{'' if phase.get('ok') else ' [red]failed[/]'}"
            )
        for f in doc["findings"]:
            out.print(f"  [red]{f['kind']}[/] {f['study_uid'] or ''} {f['detail']}")
        if doc.get("report"):
            out.print(f"  report: {doc['report']}", soft_wrap=True)

    app.emit(doc, render)
    return 0


command = drill_group
