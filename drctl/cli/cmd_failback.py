"""``drctl failback``."""

from __future__ import annotations

import click

from drctl.actions.failover import run_failback
from drctl.cli.switch import render_switch


@click.command("failback")
@click.option("--standby", help="The standby that served (default: the recorded failover's).")
@click.option("--to", "to", help="The recovered primary (default: the one failed over from).")
@click.option("--dry-run", is_flag=True, help="Compare and list; send nothing.")
@click.pass_obj
def failback(app, standby, to, dry_run):
    """Send the studies stored on the standby while it served back to the primary and
    verify them there; list the studies deleted on the standby for a person to decide
    (never replayed). Exit 1 when a study could not be verified, or a decision is due."""
    result = run_failback(app.context(), standby, to=to, dry_run=dry_run)
    app.emit(result.to_json(), lambda out: render_switch(out, result))
    if result.state == "failed":
        return 1
    return 1 if result.studies_to_decide and not dry_run else 0


command = failback
