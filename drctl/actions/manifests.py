"""Manifest and study queries: ``manifest show``, ``manifest diff``, ``studies locate``,
``studies ack-vanished``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from drctl.actions.context import Context
from drctl.actions.snapshots import resolve_snapshot
from drctl.catalog import audit
from drctl.catalog.models import Acknowledgement, Alarm, Snapshot, Vanished
from drctl.catalog.runs import current_user
from drctl.errors import UsageError
from drctl.restic.argv import restic_host
from drctl.verify import records
from drctl.verify.manifest import StudyEntry
from drctl.verify.manifest_store import snapshots_holding, studies_at


def study_json(entry: StudyEntry) -> dict:
    return {"study_uid": entry.study_uid, "series": entry.series, "instances": entry.instances,
            "modalities": [m for m in entry.modalities.split("\\") if m],
            "study_date": entry.study_date, "bytes": entry.bytes}


def show_manifest(ctx: Context, ref: str, *, node: str | None = None) -> tuple[Snapshot, list[StudyEntry]]:
    """The studies of snapshot ``ref`` (an ID prefix or ``latest``)."""
    snap = resolve_snapshot(ctx, ref, node=node)
    with ctx.catalog.session() as s:
        return snap, studies_at(s, ctx.site, snap.node, snap.seq)


@dataclass
class ManifestDiff:
    old: Snapshot
    new: Snapshot
    added: list[StudyEntry]
    removed: list[StudyEntry]
    changed: list[tuple[StudyEntry, StudyEntry]]

    def to_json(self) -> dict:
        return {
            "old": self.old.snapshot_id, "new": self.new.snapshot_id, "node": self.new.node,
            "added": [study_json(s) for s in self.added],
            "removed": [study_json(s) for s in self.removed],
            "changed": [{"study_uid": a.study_uid, "series": [a.series, b.series],
                         "instances": [a.instances, b.instances]} for a, b in self.changed],
            "counts": {"added": len(self.added), "removed": len(self.removed),
                       "changed": len(self.changed)},
        }


def diff_manifests(ctx: Context, old_ref: str, new_ref: str) -> ManifestDiff:
    old = resolve_snapshot(ctx, old_ref)
    new = resolve_snapshot(ctx, new_ref, node=old.node if new_ref == "latest" else None)
    if old.node != new.node:
        raise UsageError(f"snapshots {old.short_id} ({old.node}) and {new.short_id} "
                         f"({new.node}) are of different nodes")
    with ctx.catalog.session() as s:
        a = {e.study_uid: e for e in studies_at(s, ctx.site, old.node, old.seq)}
        b = {e.study_uid: e for e in studies_at(s, ctx.site, new.node, new.seq)}
    return ManifestDiff(
        old, new,
        added=[b[u] for u in sorted(set(b) - set(a))],
        removed=[a[u] for u in sorted(set(a) - set(b))],
        changed=[(a[u], b[u]) for u in sorted(set(a) & set(b))
                 if (a[u].series, a[u].instances) != (b[u].series, b[u].instances)],
    )


def locate_study(ctx: Context, study_uid: str) -> list[dict]:
    """Every snapshot (not forgotten) that holds ``study_uid``, newest first."""
    with ctx.catalog.session() as s:
        found = snapshots_holding(s, ctx.site, study_uid)
        return [{"snapshot_id": snap.snapshot_id, "time": snap.time.isoformat(),
                 "node": snap.node, "repository": snap.repository, "series": row.series,
                 "instances": row.instances, "verified": snap.verified_at is not None,
                 "status": snap.status} for row, snap in found]


def ack_vanished(ctx: Context, study_uids: list[str], reason: str) -> dict:
    """Acknowledge expected deletions: detected ones stop raising warnings, future ones
    are acknowledged ahead. Closes mass-deletion alarms whose studies are all acknowledged.
    Recorded in the audit trail and in the repository (so a rebuilt catalog keeps it)."""
    if not reason.strip():
        raise UsageError("--reason is required: say why these studies may vanish")
    now = datetime.now(UTC)
    user = current_user()
    acked, ahead, closed = [], [], []
    with ctx.catalog.session() as s:
        for uid in study_uids:
            hits = s.execute(update(Vanished).where(
                Vanished.site == ctx.site, Vanished.study_uid == uid, Vanished.acked_at.is_(None),
            ).values(acked_at=now, acked_by=user, ack_reason=reason)).rowcount
            if hits:
                acked.append(uid)
            else:
                s.add(Acknowledgement(site=ctx.site, study_uid=uid, reason=reason, by=user, at=now))
                ahead.append(uid)
        closed = _close_satisfied_alarms(s, ctx.site, now, user, reason)
        audit.append(s, "studies ack-vanished", target=",".join(study_uids)[:1000],
                     result=f"acknowledged {len(acked)}, ahead {len(ahead)}")
    _store_ack_record(ctx, study_uids, reason, user, now)
    return {"acknowledged": acked, "acknowledged_ahead": ahead, "alarms_closed": closed,
            "reason": reason}


def _close_satisfied_alarms(s, site: str, now: datetime, user: str, reason: str) -> list[int]:
    closed = []
    for alarm in list(s.scalars(select(Alarm).where(
            Alarm.site == site, Alarm.closed_at.is_(None), Alarm.kind == "mass_deletion"))):
        pending = s.scalar(select(Vanished.id).where(Vanished.run_id == alarm.run_id,
                                                     Vanished.acked_at.is_(None)).limit(1))
        if pending is None:
            alarm.closed_at, alarm.closed_by = now, user
            alarm.close_reason = f"all vanished studies acknowledged: {reason}"
            closed.append(alarm.id)
    return closed


def _store_ack_record(ctx: Context, uids: list[str], reason: str, user: str,
                      now: datetime) -> None:
    document = {"format": "drctl-ack/1", "site": ctx.site, "study_uids": uids,
                "reason": reason, "by": user, "at": now.isoformat()}
    for name in ctx.settings.repository:
        ctx.restic(name).backup_bytes(
            records.encode(document), filename=records.record_filename("ack", None),
            host=restic_host(ctx.site, "drctl"), tags=records.record_tags("ack", site=ctx.site))
