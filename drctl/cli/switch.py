"""Rendering of failover and failback results."""

from __future__ import annotations

from drctl.cli.render import state as styled

MARK = {"done": "[green]done[/]", "failed": "[red]FAILED[/]", "planned": "planned",
        "skipped": "skipped"}


def render_switch(out, result) -> None:
    verb = "would" if result.dry_run else ""
    out.print(f"{result.action} {result.primary} -> {result.standby} {verb} "
              f"{styled(result.state)}".replace("  ", " "))
    for step in result.steps:
        out.print(f"  {MARK.get(step.state, step.state):>8}  {step.step}"
                  + (f": {step.detail}" if step.detail else ""))
    for uid in result.studies_sent:
        out.print(f"  {'to send' if result.dry_run else 'sent'}: {uid}")
    for uid in result.studies_to_decide:
        out.print(f"  [yellow]deleted on the standby, decide:[/] {uid}")
    for uid in result.studies_without_images:
        out.print(f"  [red]no images in any snapshot (ask the modality to resend):[/] {uid}")
