"""``drctl failover``."""

from __future__ import annotations

import click

from drctl.actions.failover import run_failover
from drctl.cli.switch import render_switch


@click.command("failover")
@click.option("--standby", required=True, help="The standby node to serve from.")
@click.option("--dry-run", is_flag=True, help="Show the steps; change nothing.")
@click.option("--force", is_flag=True, help="Even when the latest drill did not pass.")
@click.pass_obj
def failover(app, standby, dry_run, force):
    """Fail over to STANDBY: final replication, newest snapshot restored onto it and
    verified over DICOM, state recorded. Refuses (exit 1) when the latest drill failed,
    unless --force."""
    result = run_failover(app.context(), standby, dry_run=dry_run, force=force)
    app.emit(result.to_json(), lambda out: render_switch(out, result))
    return 0 if result.state in ("succeeded", "planned") else 1


command = failover
