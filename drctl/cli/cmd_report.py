"""``drctl report [--out PATH] [--since DATE]``: the site report as one HTML page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from drctl.errors import UsageError


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """``2024-05-01``, ``2024-05-01T08:00`` (UTC unless it says otherwise) or a duration
    back from now (``30d``, ``12w``) -> an aware UTC datetime. UsageError otherwise."""
    if value is None:
        return None
    from drctl.config import parse_duration

    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - timedelta(seconds=parse_duration(text))
        except ValueError:
            raise UsageError(
                f"--since {value!r}: not a date (2024-05-01, 2024-05-01T08:00) or a "
                "duration back from now (30d, 12w)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise UsageError(f"--since {value!r} is in the future")
    return moment.astimezone(UTC)


@click.command("report")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML page (default: reports.dir, else <data_dir>/reports, "
    "as site-<site>-<time>.html).",
)
@click.option(
    "--since",
    metavar="DATE",
    help="Start of the period: a date or time (UTC unless given), or a duration back from "
    "now like 30d or 12w (default: everything recorded).",
)
@click.pass_obj
def command(app, out, since):
    """The site report: verdict summary, charts (RPO over time, RTO per drill, archive
    size and bytes added, studies per snapshot), drill history with findings, repository
    checks, backups and the HIPAA 164.308(a)(7) evidence table, as one self-contained
    HTML page (no external assets; prints to PDF). JSON: the report's record. Exit 1 when
    the verdict shows open problems (as drctl status), 0 otherwise."""
    from drctl.actions.report import build_report, write_report
    from drctl.actions.status import site_status
    from drctl.scheduler.status import scheduler_status

    ctx = app.context()
    schedule = scheduler_status(app.settings, app.catalog).to_json()
    status = site_status(ctx, schedule=schedule)
    report = build_report(ctx, status, since=parse_since(since, status.now))
    path = write_report(ctx, report, out)

    def render(console):
        colour = "green" if report.verdict["ok"] else "bold red"
        console.print(f"site {report.site}: [{colour}]{report.verdict['headline']}[/]")
        console.print(f"report: {path}", soft_wrap=True)

    app.emit(report.to_json(), render)
    return 0 if report.verdict["ok"] else 1
