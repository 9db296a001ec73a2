"""``drctl repo init``."""

from __future__ import annotations

import click

from drctl.actions.repo import init_repository
from drctl.cli.common import repositories_for


@click.group("repo")
def repo_group():
    """Repositories."""


@repo_group.command("init")
@click.option("--repository", help="Repository name (default: every configured one).")
@click.pass_obj
def init(app, repository):
    """Create the restic repository; for S3, create the bucket if needed, enable versioning
    and report Object Lock. Idempotent."""
    ctx = app.context()
    results = [init_repository(ctx, name) for name in repositories_for(app, repository)]

    def render(out):
        for r in results:
            verb = "created" if r.created else "already exists, password works"
            out.print(f"repository {r.repository}: {verb}")
            if r.bucket:
                out.print(f"  bucket: versioning {r.bucket.versioning}, "
                          f"object lock {r.bucket.object_lock}")
            for note in r.notes:
                out.print(f"  note: {note}")
            for w in r.warnings:
                out.print(f"  [yellow]warning:[/] {w}")

    app.emit([r.to_json() for r in results] if repository is None else results[0].to_json(),
             render)
    return 1 if any(r.warnings for r in results) else 0


command = repo_group
