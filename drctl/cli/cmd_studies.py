"""``drctl studies locate`` and ``drctl studies ack-vanished``."""

from __future__ import annotations

import click

from drctl.actions.manifests import ack_vanished, locate_study
from drctl.cli.render import short_time, table


@click.group("studies")
def studies_group():
    """Studies across snapshots."""


@studies_group.command("locate")
@click.argument("study_uid")
@click.pass_obj
def locate(app, study_uid):
    """Every snapshot that holds STUDY_UID, newest first. Exit 1 when none does."""
    rows = locate_study(app.context(), study_uid)

    def render(out):
        if not rows:
            out.print(f"study {study_uid} is in no snapshot")
            return
        t = table("snapshot", "time", "node", "repository", "series", "instances", "verified")
        for r in rows:
            t.add_row(r["snapshot_id"][:8], short_time(r["time"]), r["node"], r["repository"],
                      str(r["series"]), str(r["instances"]), "yes" if r["verified"] else "")
        out.print(t)

    app.emit(rows, render)
    return 0 if rows else 1


@studies_group.command("ack-vanished")
@click.argument("study_uids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why these studies may vanish (QC, retention...).")
@click.pass_obj
def ack(app, study_uids, reason):
    """Acknowledge expected deletions so they stop raising warnings (audited)."""
    result = ack_vanished(app.context(), list(study_uids), reason)

    def render(out):
        for uid in result["acknowledged"]:
            out.print(f"acknowledged: {uid}")
        for uid in result["acknowledged_ahead"]:
            out.print(f"acknowledged ahead (not vanished yet): {uid}")
        for alarm in result["alarms_closed"]:
            out.print(f"alarm {alarm} closed: all its vanished studies are acknowledged")

    app.emit(result, render)
    return 0


command = studies_group
