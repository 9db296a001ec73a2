"""``drctl catalog rebuild``."""

from __future__ import annotations

import click

from drctl.actions.rebuild import rebuild_catalog
from drctl.cli.common import repositories_for


@click.group("catalog")
def catalog_group():
    """The catalog database."""


@catalog_group.command("rebuild")
@click.option("--repository", help="Repository to read (default: every configured one).")
@click.option("--replace", is_flag=True,
              help="Replace what the catalog already knows of the repository.")
@click.pass_obj
def rebuild(app, repository, replace):
    """Rebuild snapshots, manifests and verified marks from the repository alone."""
    ctx = app.context()
    results = [rebuild_catalog(ctx, name, replace=replace)
               for name in repositories_for(app, repository)]

    def render(out):
        for r in results:
            out.print(f"repository {r['repository']}: {r['snapshots']} snapshots, "
                      f"{r['manifests']} manifests, {r['verifications']} drill verifications, "
                      f"{r['acknowledgements']} acknowledgements restored")

    app.emit(results[0] if repository else results, render)
    return 0


command = catalog_group
