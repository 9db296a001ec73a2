"""``drctl replicate run`` and ``drctl replicate status``."""

from __future__ import annotations

import click

from drctl.actions.replicate import run_replicate
from drctl.actions.replicate_status import replication_status
from drctl.actions.replication_plan import standbys_for
from drctl.cli.render import human_bytes, short_time, state, table
from drctl.config import format_duration


@click.group("replicate")
def replicate_group():
    """Index replication to standby nodes."""


@replicate_group.command("run")
@click.option("--node", help="Standby to bring up to date (default: every standby).")
@click.option(
    "--fresh",
    is_flag=True,
    help="SQLite: take a new index copy of the primary now (its index_copy method) "
    "instead of the newest one the backups stored.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replicate even while a circuit breaker of the primary is open (audited).",
)
@click.pass_obj
def run(app, node, fresh, force):
    """Copy the primary's index to the standby (SQLite copy through the repository, or
    PostgreSQL dump/restore and swap), or measure a streaming replica's lag. Exit 1 when a
    replication failed, paused on an open alarm, or ended in state warning."""
    ctx = app.context()
    results = [
        run_replicate(ctx, name, fresh=fresh, force=force)
        for name in standbys_for(app.settings, node)
    ]

    def render(out):
        for r in results:
            what = (
                "already current"
                if r.skipped
                else f"position {r.position}, {r.studies if r.studies is not None else '-'} "
                f"studies, {human_bytes(r.bytes)}"
            )
            out.print(
                f"standby {r.standby} <- {r.primary} ({r.mode}): {state(r.state)} "
                f"in {format_duration(r.duration_s)}; {what}"
            )
            if r.outage_s is not None:
                out.print(f"  standby outage {format_duration(r.outage_s)}")
            if r.lag_s is not None:
                extra = f", {r.lag_bytes} bytes" if r.lag_bytes is not None else ""
                out.print(f"  lag {format_duration(r.lag_s)}{extra}")
            if r.reason:
                out.print(f"  [yellow]{r.reason}[/]")

    payload = [r.to_json() for r in results]
    app.emit(payload[0] if len(payload) == 1 else payload, render)
    return 0 if all(r.state == "succeeded" for r in results) else 1


@replicate_group.command("status")
@click.option("--node", help="One standby (default: every standby).")
@click.pass_obj
def status(app, node):
    """Per standby: mode, last success, index lag, index and image ages, effective RPO.
    JSON: an array, one object per standby. Exit 1 when a standby breaches
    drill.max_rpo, never replicated, has no images, or its last replication failed."""
    rows = replication_status(app.context(), standbys_for(app.settings, node))

    def render(out):
        t = table(
            "standby", "mode", "last success", "lag", "index age", "image age", "RPO", "state"
        )
        for r in rows:
            t.add_row(
                r.standby,
                r.mode,
                short_time(r.last_success),
                format_duration(r.lag_s),
                format_duration(r.index_age_s),
                format_duration(r.image_age_s),
                format_duration(r.rpo_s),
                state("succeeded") if r.ok else "[red]problem[/]",
            )
        out.print(t)
        for r in rows:
            for problem in r.problems:
                out.print(f"[red]{r.standby}[/]: {problem}")
            for note in r.notes:
                out.print(f"{r.standby}: {note}")

    app.emit([r.to_json() for r in rows], render)
    return 0 if all(r.ok for r in rows) else 1


command = replicate_group
