"""``drctl status [--fleet]``: the site (or every site of a shared catalog) at a glance.

Problems come first, in red, breaches of a target before the rest; then one small table
per concern. Everything fits an 80-column terminal. Exit 1 when there is any problem.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from drctl.cli.render import human_bytes, short_time, state
from drctl.cli.render import table as _table
from drctl.config import format_duration


def table(*columns: str, title: str | None = None) -> Table:
    t = _table(*columns, title=title)
    t.title_justify, t.title_style = "left", "bold"
    return t


def ago(age_s: float | None) -> str:
    return "-" if age_s is None else f"{format_duration(age_s)} ago"


def _problems(out: Console, problems: list[dict]) -> None:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for p in problems:
        mark = "[bold red]BREACH[/]" if p["severity"] == "breach" else "[red]problem[/]"
        grid.add_row(mark, f"[red]{p['message']}[/]")
    out.print(grid)


def _headline(out: Console, doc: dict) -> None:
    targets = doc["targets"]
    out.print(
        f"[bold]site {doc['site']}[/] {short_time(doc['now'])}  targets: RPO "
        f"{format_duration(targets['max_rpo_s'])}, RTO {format_duration(targets['max_rto_s'])}"
    )
    if doc["ok"]:
        out.print("[bold green]OK[/] every target met, no open problem")
        return
    from drctl.reports.site import problem_counts

    out.print(f"[bold red]{problem_counts(doc['breaches'], len(doc['problems']))}[/]")
    _problems(out, doc["problems"])


def _backups(out: Console, nodes: list[dict]) -> None:
    t = table("node", "backup", "state", "size", "added", "studies", "RPO", title="Backups")
    for n in nodes:
        backup, snap, rpo = n["backup"] or {}, n["snapshot"] or {}, n["rpo"]
        rpo_text = format_duration(rpo["image_s"]) if rpo["image_s"] is not None else "none"
        t.add_row(
            n["node"],
            ago(backup.get("age_s")),
            state(backup.get("state") or "-"),
            human_bytes(snap.get("bytes")),
            human_bytes(snap.get("bytes_added")),
            str(snap.get("studies") if snap.get("studies") is not None else "-"),
            f"[red]{rpo_text}[/]" if rpo["breach"] else rpo_text,
        )
    out.print(t)


def _drills(out: Console, nodes: list[dict], max_rto: float) -> None:
    t = table("node", "drill", "verdict", "verified", "RTO", "RPO", "findings", title="Drills")
    for n in nodes:
        d = n["drill"]
        if d is None:
            t.add_row(n["node"], "never", "[red]-[/]", "-", "-", "-", "-")
            continue
        rto = format_duration(d["rto_s"]) + ("*" if d["rto_projected"] else "")
        if d["rto_s"] is not None and d["rto_s"] > max_rto:
            rto = f"[red]{rto}[/]"
        t.add_row(
            n["node"],
            f"#{d['drill_id']} {ago(d['age_s'])}",
            state(d["state"]),
            f"{d['studies_verified']}/{d['studies_expected']}",
            rto,
            format_duration(d["rpo_s"]),
            str(d["findings"]),
        )
    out.print(t)


def _standbys(out: Console, nodes: list[dict]) -> None:
    t = table("standby", "primary", "lag", "RPO", "last success", "state", title="Standbys")
    for n in nodes:
        r = n["replication"] or {}
        t.add_row(
            n["node"],
            n.get("primary") or "-",
            format_duration(r.get("lag_s")),
            format_duration(r.get("rpo_s")),
            short_time(r.get("last_success")),
            state("succeeded") if r.get("ok") else "[red]problem[/]",
        )
    out.print(t)


def _checks(out: Console, repositories: list[dict]) -> None:
    t = table("repository", "last check", "state", "took", title="Repository checks")
    for r in repositories:
        c = r["check"] or {}
        t.add_row(
            r["repository"],
            ago(c.get("age_s")) if c else "never",
            state(c.get("state") or "-"),
            format_duration(c.get("duration_s")),
        )
    out.print(t)


def _schedule(out: Console, schedule: dict) -> None:
    if not schedule.get("jobs"):
        out.print("[bold]Next scheduled runs[/]: none (no job in \\[schedule])")
        return
    t = table("job", "next run", "trigger", "last", title="Next scheduled runs")
    for job in schedule["jobs"][:8]:
        when = short_time(job["next_run_at"])
        t.add_row(
            job["job"],
            when if job["leader_alive"] else f"[red]{when}[/] (no daemon)",
            job["trigger"],
            state(job["last_state"] or "-"),
        )
    out.print(t)


def render_site(out: Console, doc: dict) -> None:
    """The status of one site for people (problems first)."""
    _headline(out, doc)
    primaries = [n for n in doc["nodes"] if n["role"] == "primary"]
    standbys = [n for n in doc["nodes"] if n["role"] == "standby"]
    if primaries:
        out.print()
        _backups(out, primaries)
        out.print()
        _drills(out, primaries, doc["targets"]["max_rto_s"])
    if standbys:
        out.print()
        _standbys(out, standbys)
    if doc["repositories"]:
        out.print()
        _checks(out, doc["repositories"])
    out.print()
    _schedule(out, doc["schedule"])


def render_fleet(out: Console, doc: dict) -> None:
    """One line per site, worst first (state with its number of problems, worst image
    RPO, newest backup and drill with their ages), then the worst problem of each site in
    trouble."""
    bad = [s for s in doc["sites"] if not s["ok"]]
    head = f"[bold]fleet[/]: {len(doc['sites'])} site(s), "
    out.print(head + (f"[bold red]{len(bad)} with problems[/]" if bad else "[green]all OK[/]"))
    t = table("site", "state", "RPO", "backup", "age", "drill", "age")
    for s in doc["sites"]:
        count = f" ({s['problems_count']})" if s["problems_count"] else ""
        if s["breaches"]:
            verdict = f"[bold red]BREACH[/]{count}"
        else:
            verdict = f"[red]problem[/]{count}" if s["problems_count"] else "[green]ok[/]"
        rpo = format_duration(s["rpo_s"]) if s["rpo_s"] is not None else "none"
        backup, drill = s["last_backup"] or {}, s["last_drill"] or {}
        t.add_row(
            s["site"],
            verdict,
            f"[red]{rpo}[/]" if s["rpo_breach"] else rpo,
            state(backup["state"]) if backup else "[red]never[/]",
            format_duration(backup.get("age_s")),
            state(drill["state"]) if drill else "[red]never[/]",
            format_duration(drill.get("age_s")),
        )
    out.print(t)
    if bad:
        _problems(
            out,
            [
                {
                    "severity": "breach" if s["breaches"] else "problem",
                    "message": f"{s['site']}: {s['worst']}",
                }
                for s in bad
            ],
        )


@click.command("status")
@click.option(
    "--fleet",
    is_flag=True,
    help="One line per site of the (shared PostgreSQL) catalog, worst first, judged from "
    "the catalog alone.",
)
@click.pass_obj
def command(app, fleet):
    """The site at a glance: per node the last backup (age, size, state), image RPO, last
    drill (verdict, RTO, RPO), standby lag, last repository check, next scheduled runs;
    open problems first, in red. Exit 1 when a target is breached (RPO over
    drill.max_rpo, last drill not passed or over drill.max_rto, open alarm, last backup or
    check failed) or another problem is open (vanished studies not acknowledged, a failed
    run, no scheduler daemon for scheduled jobs)."""
    ctx = app.context()
    if fleet:
        from drctl.actions.status_fleet import fleet_status

        result = fleet_status(ctx)
        doc = result.to_json()
        app.emit(doc, lambda out: render_fleet(out, doc))
        return 0 if result.ok else 1
    from drctl.actions.status import site_status
    from drctl.scheduler.status import scheduler_status

    schedule = scheduler_status(app.settings, app.catalog).to_json()
    result = site_status(ctx, schedule=schedule)
    doc = result.to_json()
    app.emit(doc, lambda out: render_site(out, doc))
    return 0 if result.ok else 1
