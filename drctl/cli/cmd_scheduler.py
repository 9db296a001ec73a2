"""``drctl scheduler run`` (the daemon of one agent) and ``drctl scheduler status``."""

from __future__ import annotations

import logging
import os

import click
from rich.table import Table

from drctl.cli.render import short_time, state

DAEMON_FORMAT = "%(asctime)s drctl[%(process)d]: %(levelname)s: %(message)s"
JOURNAL_FORMAT = "drctl: %(levelname)s: %(message)s"  # the journal stamps time and pid


@click.group("scheduler")
def scheduler_group():
    """The scheduler daemon and its status."""


def _daemon_logging(app) -> None:
    """INFO by default (job starts and ends are the daemon's story), timestamps unless
    systemd's journal already adds them."""
    root = logging.getLogger()
    fmt = JOURNAL_FORMAT if os.environ.get("JOURNAL_STREAM") else DAEMON_FORMAT
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%dT%H:%M:%S%z"))
    if not app.quiet and app.verbosity == 0:
        logging.getLogger("drctl").setLevel(logging.INFO)
    if app.verbosity < 3:
        logging.getLogger("apscheduler").setLevel(logging.ERROR)


@scheduler_group.command("run")
@click.option(
    "--agent",
    help="The agent whose jobs this daemon runs (default: this host's "
    "short name, as for nodes without agent =).",
)
@click.pass_obj
def run(app, agent):
    """Run the [schedule] jobs of one agent in the foreground until SIGTERM (exit 0).

    Logs go to stderr; SIGHUP reloads the configuration. Daemons of the same agent on a
    PostgreSQL catalog elect one leader (lease with fencing token); on a SQLite catalog a
    second daemon of an agent exits 3. Every daemon watches the site's RPO and alerts."""
    from drctl.config import find_config, load, local_agent
    from drctl.scheduler.daemon import Daemon

    _daemon_logging(app)
    settings = app.settings
    path = find_config(app.config_path)
    daemon = Daemon(settings, app.catalog, agent or local_agent(), reload=lambda: load(path))
    return daemon.run()


@scheduler_group.command("status")
@click.pass_obj
def status(app):
    """Per agent: jobs, triggers, next run, last run with its state, and the current leader
    (host, pid, since, lease expiry); the site's RPO clocks. Exit 1 when an agent with jobs
    has no live leader, a job's last run failed, or an RPO clock exceeds drill.max_rpo."""
    from drctl.scheduler.status import scheduler_status

    result = scheduler_status(app.settings, app.catalog)
    doc = result.to_json()

    def render(out):
        for agent in doc["agents"]:
            leader = agent["leader"]
            if leader and leader["alive"]:
                who = (
                    f"leader pid {leader['pid']} on {leader['host']} since "
                    f"{short_time(leader['since'])}, lease until "
                    f"{short_time(leader['expires_at'])}"
                )
            else:
                who = "[red]no live leader[/]"
            out.print(f"[bold]agent {agent['agent']}[/]: {who}")
            if not agent["jobs"]:
                out.print("  no scheduled jobs")
                continue
            t = Table(box=None, pad_edge=False, header_style="bold")
            for column in ("job", "trigger", "next run", "last run", "state"):
                t.add_column(column, no_wrap=True)
            for job in agent["jobs"]:
                last = job["last_run"] or {}
                run = f" (run {last['run_id']})" if last else ""
                t.add_row(
                    job["job"],
                    job["trigger"],
                    _when(job["next_run_at"]),
                    _when(last.get("started_at")),
                    state(last.get("state") or "-") + run,
                )
            out.print(t)
        for clock in doc["rpo"]:
            mark = "[red]breach[/]" if clock["breach"] else "ok"
            age = "-" if clock["age_s"] is None else f"{clock['age_s']:.0f}s"
            out.print(f"RPO {clock['clock']} {clock['node']}: {age} ({mark})")
        for problem in doc["problems"]:
            out.print(f"[red]problem:[/] {problem}")

    app.emit(doc, render)
    return 1 if doc["problems"] else 0


def _when(value: str | None) -> str:
    """A compact UTC time for tables (month-day hour:minute:second)."""
    return short_time(value)[5:] if value else "-"


command = scheduler_group
