"""``drctl backup run`` and ``drctl backup index-copy``."""

from __future__ import annotations

import click

from drctl.actions.backup import run_backup
from drctl.actions.indexcopy import run_index_copy
from drctl.cli.common import primary_nodes_for
from drctl.cli.progress import backup_progress
from drctl.cli.render import human_bytes, state
from drctl.config import format_duration


@click.group("backup")
def backup_group():
    """Backups of primary nodes."""


@backup_group.command("run")
@click.option("--node", help="Primary node to back up (default: every primary).")
@click.option("--repository", help="Repository (default: the node's).")
@click.option("--dry-run", is_flag=True, help="Check the repository and show what would be done.")
@click.option("--index-copy", "index_copy", type=click.Choice(["auto", "fresh", "reuse"]),
              default="auto", show_default=True,
              help="fresh: copy the index now; reuse: pair with the newest stored copy; auto: "
                   "reuse when schedule.index_copy is set (SQLite), else fresh.")
@click.pass_obj
def run(app, node, repository, dry_run, index_copy):
    """Index copy, then storage snapshot, then manifest. Exit 1 when the run ends in state
    warning (vanished studies, integrity findings) or failed (circuit breaker)."""
    ctx = app.context()
    results = []
    for name in primary_nodes_for(app, node):
        with backup_progress(app, f"backup {name}") as on_status:
            results.append(run_backup(ctx, name, repository=repository, dry_run=dry_run,
                                      index_copy=index_copy, on_status=on_status))

    def render(out):
        for r in results:
            if r.state == "dry-run":
                out.print(f"node {r.node} -> repository {r.repository}: repository reachable; "
                          f"would copy the index ({r.index_copy['method']}) and snapshot "
                          f"{r.manifest['storage']}")
                continue
            out.print(f"node {r.node}: snapshot {(r.snapshot_id or '-')[:8]} in {r.repository} "
                      f"{state(r.state)} ({format_duration(r.duration_s)})")
            out.print(f"  {r.studies} studies, {r.instances} instances; {r.files_new} new files, "
                      f"{human_bytes(r.bytes_added)} added; index copy {r.index_copy.get('method')}"
                      + (f" (outage {r.index_copy['outage_s']:.1f}s)"
                         if r.index_copy.get("outage_s") else ""))
            if r.reason:
                out.print(f"  [yellow]{r.reason}[/]")
            for uid in r.vanished:
                out.print(f"  vanished: {uid}")
            for f in r.findings:
                out.print(f"  [red]{f['kind']}[/] study {f['study_uid']}: {f['detail']}")

    payload = [r.to_json() for r in results]
    app.emit(payload[0] if len(payload) == 1 else payload, render)
    return 0 if all(r.state in ("succeeded", "dry-run") for r in results) else 1


@backup_group.command("index-copy")
@click.option("--node", help="Primary node (default: every primary).")
@click.option("--repository", help="Repository (default: the node's).")
@click.pass_obj
def index_copy_cmd(app, node, repository):
    """Take a consistent index copy on its own (for schedule.index_copy)."""
    ctx = app.context()
    results = [run_index_copy(ctx, name, repository=repository)
               for name in primary_nodes_for(app, node)]

    def render(out):
        for r in results:
            outage = f", outage {r['outage_s']:.1f}s" if r["outage_s"] else ""
            out.print(f"node {r['node']}: index copy ({r['method']}) stored as "
                      f"{r['record_id'][:8]}: {r['studies']} studies, {human_bytes(r['bytes'])}"
                      f"{outage}")

    app.emit(results[0] if len(results) == 1 else results, render)
    return 0


command = backup_group
