"""``drctl check``."""

from __future__ import annotations

import click

from drctl.actions.check import run_check
from drctl.cli.common import repositories_for
from drctl.config import format_duration


@click.command("check")
@click.option("--repository", help="Repository name (default: every configured one).")
@click.option("--read-data-subset", "subset", metavar="PCT|n/N",
              help="Read this share of the data (default: the next slice of check_read_subset).")
@click.pass_obj
def check(app, repository, subset):
    """Repository integrity (restic check), recorded in the catalog. Exit 1 on damage."""
    ctx = app.context()
    results = [run_check(ctx, name, read_data_subset=subset)
               for name in repositories_for(app, repository)]

    def render(out):
        for r in results:
            verdict = "[green]ok[/]" if r.ok else f"[red]DAMAGED[/]: {r.error}"
            out.print(f"repository {r.repository}: {verdict} (read {r.subset or 'metadata only'}, "
                      f"{format_duration(r.duration_s)})")

    app.emit([r.to_json() for r in results] if repository is None else results[0].to_json(),
             render)
    return 0 if all(r.ok for r in results) else 1


command = check
