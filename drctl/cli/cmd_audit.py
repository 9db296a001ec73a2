"""``drctl audit verify``."""

from __future__ import annotations

import click

from drctl.actions.audit import verify_audit


@click.group("audit")
def audit_group():
    """The audit trail."""


@audit_group.command("verify")
@click.pass_obj
def verify(app):
    """Check the audit trail's hash chain and the anchors in the repositories. Exit 1 when
    a row was edited, deleted or the tail truncated."""
    report = verify_audit(app.context())

    def render(out):
        verdict = "[green]intact[/]" if report["ok"] else "[red]BROKEN[/]"
        out.print(f"audit trail {verdict}: {report['events']} events, head {report['head_id']}")
        for name, n in report["anchors"].items():
            out.print(f"  repository {name}: {n} anchors" if isinstance(n, int)
                      else f"  repository {name}: {n}")
        for problem in report["problems"]:
            out.print(f"  [red]{problem}[/]")

    app.emit(report, render)
    return 0 if report["ok"] else 1


command = audit_group
