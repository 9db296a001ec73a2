"""``drctl prune``."""

from __future__ import annotations

import click

from drctl.actions.prune import run_prune
from drctl.cli.common import repositories_for


@click.command("prune")
@click.option("--repository", help="Repository name (default: every configured one).")
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@click.option("--max-share", type=click.FloatRange(0, 1, min_open=True),
              help="Override prune_max_share for this run (e.g. after a long pause).")
@click.pass_obj
def prune(app, repository, dry_run, max_share):
    """Apply the retention policy (restic forget --prune). Refuses (exit 1) when the plan
    would remove a node's newest snapshot, more than prune_max_share of the snapshots, or
    while a circuit breaker is open; always keeps the newest drill-verified snapshot."""
    ctx = app.context()
    plans = [run_prune(ctx, name, dry_run=dry_run, max_share=max_share)
             for name in repositories_for(app, repository)]

    def render(out):
        for p in plans:
            if p.refusals:
                out.print(f"repository {p.repository}: [red]prune refused[/]")
                for reason in p.refusals:
                    out.print(f"  - {reason}")
                continue
            verb = "would forget" if dry_run else "forgot"
            out.print(f"repository {p.repository}: {verb} {len(p.remove)} of {p.total} snapshots"
                      f" ({len(p.records)} index copies with them)")
            for snap in p.kept_verified:
                out.print(f"  kept {snap[:8]}: newest snapshot verified by a drill")

    app.emit([p.to_json() for p in plans] if repository is None else plans[0].to_json(), render)
    return 1 if any(p.refusals for p in plans) else 0


command = prune
