"""``drctl config check``: validate the config, resolve every secret reference, print a
summary. Secrets are resolved to prove they can be, never printed."""

from __future__ import annotations

import click
from rich.table import Table

from drctl.actions.configcheck import check_config


@click.group("config")
def config_group():
    """Configuration."""


@config_group.command("check")
@click.pass_obj
def check(app):
    """Validate the config and resolve its secret references (never printed)."""
    report = check_config(app.settings)

    def render(out):
        out.print(f"config {app.settings.source}: site {app.settings.controller.site}")
        table = Table("section", "name", "summary", box=None, pad_edge=False)
        for row in report["items"]:
            table.add_row(row["section"], row["name"], row["summary"])
        out.print(table)
        for ref in report["secrets"]:
            mark = "ok" if ref["ok"] else "FAILED"
            out.print(f"secret {ref['key']} ({ref['reference']}): {mark}"
                      + (f" - {ref['problem']}" if ref["problem"] else ""))
        for warning in report["warnings"]:
            out.print(f"[yellow]warning:[/] {warning}")

    app.emit(report, render)
    return 0 if report["ok"] else 2


command = config_group
