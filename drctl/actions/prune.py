"""``drctl prune``: apply the retention policy, safely.

drctl first asks restic for the plan (``forget --dry-run --json``, explicit
``--group-by host,paths``, storage snapshots only), then applies the safety rule
(:func:`refusals`, the one place it lives), then forgets exactly the approved snapshot IDs
with the prune credentials. The newest snapshot verified by a drill is always kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from drctl.actions.context import Context
from drctl.catalog.models import Alarm, IndexCopy, Record, Snapshot
from drctl.restic.argv import TAG_DRCTL, tag

log = logging.getLogger(__name__)

GROUP_BY = "host,paths"
STORAGE_TAGS = (TAG_DRCTL, tag("kind", "storage"))


@dataclass
class PrunePlan:
    repository: str
    total: int
    remove: list[str]  # storage snapshot IDs
    keep: list[str]
    kept_verified: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # drctl records that go with them
    refusals: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return len(self.remove) / self.total if self.total else 0.0

    def to_json(self) -> dict:
        return {"repository": self.repository, "snapshots": self.total,
                "remove": self.remove, "keep": self.keep, "kept_verified": self.kept_verified,
                "records": self.records, "share": round(self.share, 4),
                "refused": bool(self.refusals), "refusals": self.refusals}


def refusals(*, remove: set[str], newest: dict[str, str], total: int, max_share: float,
             open_alarms: list[str]) -> list[str]:
    """Why a plan must not run (empty when it may). ``newest`` maps each node (restic host)
    to its newest snapshot ID. This is the only place the prune safety rule lives."""
    reasons = []
    for host, snap in sorted(newest.items()):
        if snap in remove:
            reasons.append(f"the plan would remove the newest snapshot of {host} ({snap[:8]})")
    if total and len(remove) / total > max_share:
        reasons.append(f"the plan would forget {len(remove)} of {total} snapshots "
                       f"({len(remove) / total:.0%} > prune_max_share {max_share:.0%})")
    for alarm in open_alarms:
        reasons.append(f"circuit breaker open: {alarm}; acknowledge it before pruning")
    return reasons


def plan_prune(ctx: Context, repository: str, *, max_share: float | None = None) -> PrunePlan:
    """Compute the plan and its refusals; changes nothing."""
    repo = ctx.settings.repository[repository]
    restic = ctx.restic(repository)
    restic.probe()
    policy = repo.retention.model_dump()
    groups = restic.forget_plan(policy, group_by=GROUP_BY, tags=list(STORAGE_TAGS))
    remove: set[str] = set()
    keep: set[str] = set()
    newest: dict[str, str] = {}
    for group in groups:
        members = sorted((*group.keep, *group.remove), key=lambda s: s.time)
        if members:
            newest[group.host] = members[-1].id
        remove |= {s.id for s in group.remove}
        keep |= {s.id for s in group.keep}
    with ctx.catalog.session() as s:
        verified = _newest_verified(s, repository)
        alarms = [f"{a.node}: {a.kind} ({a.detail})" for a in s.scalars(
            select(Alarm).where(Alarm.site == ctx.site, Alarm.closed_at.is_(None)))]
        kept_verified = sorted(remove & verified)
        remove -= verified
        keep |= set(kept_verified)
        records = _records_of(s, repository, remove, keep)
    plan = PrunePlan(repository, len(remove) + len(keep), sorted(remove), sorted(keep),
                     kept_verified, records)
    plan.refusals = refusals(remove=remove, newest=newest, total=plan.total,
                             max_share=max_share if max_share is not None else repo.prune_max_share,
                             open_alarms=alarms)
    return plan


def _newest_verified(session, repository: str) -> set[str]:
    """Per node, the newest snapshot that passed a drill."""
    rows = session.execute(
        select(Snapshot.node, Snapshot.snapshot_id, Snapshot.time)
        .where(Snapshot.repository == repository, Snapshot.verified_at.is_not(None),
               Snapshot.forgotten_at.is_(None))
    ).all()
    best: dict[str, tuple] = {}
    for node, snap, when in rows:
        if node not in best or when > best[node][1]:
            best[node] = (snap, when)
    return {snap for snap, _ in best.values()}


def _records_of(session, repository: str, remove: set[str], keep: set[str]) -> list[str]:
    """drctl records that can go with the removed snapshots: index copies paired only with
    removed snapshots (never a node's newest copy). Manifest records stay (later manifests
    are deltas on top of them); verification, report and audit records are evidence."""
    if not remove:
        return []
    pairs = session.execute(
        select(Snapshot.snapshot_id, IndexCopy.record_id, IndexCopy.node)
        .join(IndexCopy, Snapshot.index_copy_id == IndexCopy.id)
        .where(Snapshot.repository == repository)
    ).all()
    used_by_kept = {rec for snap, rec, _ in pairs if snap in keep}
    newest = set(session.scalars(
        select(IndexCopy.record_id).where(
            IndexCopy.repository == repository,
            IndexCopy.id.in_(select(func.max(IndexCopy.id)).group_by(IndexCopy.node)))).all())
    return sorted({rec for snap, rec, _ in pairs
                   if snap in remove and rec not in used_by_kept and rec not in newest})


def run_prune(ctx: Context, repository: str, *, dry_run: bool = False,
              max_share: float | None = None) -> PrunePlan:
    """Plan, check, and (unless ``dry_run``) forget and prune. When the safety rule
    refuses, nothing is forgotten, the run is recorded ``failed`` and the plan returned
    with its ``refusals`` (the CLI exits 1)."""
    with ctx.run("prune", repository=repository, details={"dry_run": dry_run}) as run:
        plan = plan_prune(ctx, repository, max_share=max_share)
        run.details.update(plan.to_json())
        if plan.refusals:
            run.finish("failed", "refused: " + "; ".join(plan.refusals))
            return plan
        if dry_run or not plan.remove:
            return plan
        ctx.check_fence()
        ctx.restic(repository).forget(plan.remove + plan.records, prune=True)
        now = datetime.now(UTC)
        with ctx.catalog.session() as s:
            s.execute(update(Snapshot).where(Snapshot.repository == repository,
                                             Snapshot.snapshot_id.in_(plan.remove))
                      .values(forgotten_at=now))
            if plan.records:
                s.execute(update(Record).where(Record.repository == repository,
                                               Record.record_id.in_(plan.records))
                          .values(forgotten_at=now))
    return plan
