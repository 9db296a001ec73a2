"""``drctl alarms list`` and ``drctl alarms ack``."""

from __future__ import annotations

import click

from drctl.actions.alarms import ack_alarm, list_alarms
from drctl.cli.render import short_time, table


@click.group("alarms")
def alarms_group():
    """Circuit breakers (mass deletion or modification): prune and replication pause
    while one is open."""


@alarms_group.command("list")
@click.option("--all", "include_closed", is_flag=True, help="Closed alarms too.")
@click.pass_obj
def list_cmd(app, include_closed):
    """Open alarms (exit 1 when any is open)."""
    rows = list_alarms(app.context(), include_closed=include_closed)

    def render(out):
        if not rows:
            out.print("no open alarms")
        t = table("id", "opened", "node", "kind", "detail", "closed")
        for a in rows:
            t.add_row(str(a["id"]), short_time(a["opened_at"]), a["node"], a["kind"],
                      a["detail"], short_time(a["closed_at"]) if a["closed_at"] else "")
        if rows:
            out.print(t)

    app.emit(rows, render)
    return 1 if any(a["closed_at"] is None for a in rows) else 0


@alarms_group.command("ack")
@click.argument("alarm_id", type=int)
@click.option("--reason", required=True, help="What was checked before closing it.")
@click.pass_obj
def ack(app, alarm_id, reason):
    """Close an alarm after checking the node (audited)."""
    alarm = ack_alarm(app.context(), alarm_id, reason)
    app.emit(alarm, lambda out: out.print(f"alarm {alarm_id} closed"))
    return 0


command = alarms_group
