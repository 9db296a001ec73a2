"""``drctl recovery-kit``."""

from __future__ import annotations

from pathlib import Path

import click

from drctl.actions.recoverykit import write_kit


@click.command("recovery-kit")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="An empty or new folder for the kit.")
@click.pass_obj
def recovery_kit(app, out):
    """Write what a fresh machine needs to recover without this controller: the config,
    repository locations, escrow instructions for every secret (never the secrets), the
    snapshots known today and the runbooks."""
    result = write_kit(app.context(), out)
    app.emit(result, lambda o: o.print(f"recovery kit written to {result['out']} "
                                        f"({len(result['files'])} files; "
                                        f"{result['secrets_listed']} secrets to escrow)",
                                        soft_wrap=True))
    return 0


command = recovery_kit
