"""``drctl snapshots list``."""

from __future__ import annotations

import click

from drctl.actions.snapshots import list_snapshots
from drctl.cli.render import human_bytes, short_time, table


@click.group("snapshots")
def snapshots_group():
    """Storage snapshots."""


@snapshots_group.command("list")
@click.option("--node", help="Only this node's snapshots.")
@click.option("--repository", help="Only this repository's snapshots.")
@click.option("--verify-repository", is_flag=True,
              help="Also ask the repository whether each snapshot is still there.")
@click.pass_obj
def list_cmd(app, node, repository, verify_repository):
    """Snapshots known to the catalog (oldest first)."""
    rows = list_snapshots(app.context(), node=node, repository=repository,
                          verify_repository=verify_repository)

    def render(out):
        t = table("snapshot", "time", "node", "repository", "studies", "instances", "size",
                  "added", "status")
        for r in rows:
            status = r.status + (" verified" if r.verified else "")
            if r.in_repository is False:
                status += " [red]MISSING IN REPOSITORY[/]"
            t.add_row(r.short_id, short_time(r.time), r.node, r.repository,
                      str(r.studies if r.studies is not None else "-"),
                      str(r.instances if r.instances is not None else "-"),
                      human_bytes(r.bytes), human_bytes(r.bytes_added), status)
        out.print(t if rows else "no snapshots yet")

    app.emit([r.to_json() for r in rows], render)
    missing = any(r.in_repository is False for r in rows)
    return 1 if missing else 0


command = snapshots_group
