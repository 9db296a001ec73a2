"""``drctl doctor``."""

from __future__ import annotations

import click

from drctl.actions.doctor import FAIL, WARN, run_doctor

STYLE = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


@click.command("doctor")
@click.pass_obj
def doctor(app):
    """Check tools, secrets, catalog, repositories and nodes; one line per check.
    Exit 1 when any check fails."""
    checks = run_doctor(app.context())

    def render(out):
        width = max(len(c.check) for c in checks)
        for c in checks:
            out.print(f"{STYLE[c.status]}  {c.check:<{width}}  {c.detail}", soft_wrap=True)

    failed = [c for c in checks if c.status == FAIL]
    app.emit({"ok": not failed, "warnings": sum(c.status == WARN for c in checks),
              "checks": [c.to_json() for c in checks]}, render)
    return 1 if failed else 0


command = doctor
