"""``drctl restore study``."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from drctl.actions.restore import run_restore, studies_of_patient
from drctl.cli.render import human_bytes, state
from drctl.errors import UsageError


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r}: use an ISO time like 2026-11-29T08:00 or "
                         "2026-11-29T08:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group("restore")
def restore_group():
    """Recover data from snapshots."""


@restore_group.command("study")
@click.argument("study_uids", nargs=-1)
@click.option("--to", "to", required=True, help="Node to send the study to (C-STORE).")
@click.option("--snapshot", help="Snapshot to take it from (default: the newest holding it).")
@click.option("--at", "at", help="The newest snapshot at or before this time (ISO 8601, UTC).")
@click.option("--patient-id", help="Every study of this patient (matched by keyed hash).")
@click.option("--dry-run", is_flag=True, help="List what would be sent; change nothing.")
@click.pass_obj
def study(app, study_uids, to, snapshot, at, patient_id, dry_run):
    """Restore STUDY_UID(s) from the newest snapshot holding them (or --snapshot / --at),
    check the files against the manifest, C-STORE them to --to and verify with C-FIND.
    Exit 1 when a study could not be verified at the target."""
    if snapshot and at:
        raise UsageError("give --snapshot or --at, not both")
    ctx = app.context()
    uids = list(study_uids)
    if patient_id:
        uids += [u for u in studies_of_patient(ctx, patient_id) if u not in uids]
    if not uids:
        raise UsageError("name at least one STUDY_UID or --patient-id")
    result = run_restore(ctx, uids, to, snapshot=snapshot, at=_parse_time(at), dry_run=dry_run)

    def render(out):
        verb = "would restore" if dry_run else "restored"
        for s in result.studies:
            out.print(f"{verb} study {s.study_uid} from snapshot {s.snapshot_id[:8]} "
                      f"({s.snapshot_time[:19]}Z): {s.instances} instances, {human_bytes(s.bytes)}"
                      + ("" if dry_run else f" -> {to}: {s.stored} stored, "
                         + ("[green]verified[/]" if s.verified else "[red]NOT verified[/]")))
            for p in s.problems:
                out.print(f"  [red]{p}[/]")
        if not dry_run:
            out.print(f"restore {state(result.state)}")

    app.emit(result.to_json(), render)
    return 0 if dry_run or result.state == "succeeded" else 1


command = restore_group
