"""Snapshots known to the catalog, optionally reconciled with the repository."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from drctl.actions.context import Context
from drctl.catalog.models import Snapshot
from drctl.errors import SnapshotNotFound


@dataclass(frozen=True)
class SnapshotRow:
    snapshot_id: str
    short_id: str
    time: str
    node: str
    repository: str
    studies: int | None
    instances: int | None
    bytes: int
    bytes_added: int
    status: str
    verified: bool
    in_repository: bool | None = None
    pair_time: str | None = None  # the consistent pair's time (RPO basis)
    forgotten: bool = False

    def to_json(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "time": self.time, "node": self.node,
                "repository": self.repository, "studies": self.studies,
                "instances": self.instances, "bytes": self.bytes,
                "bytes_added": self.bytes_added, "status": self.status,
                "verified": self.verified, "short_id": self.short_id,
                "pair_time": self.pair_time,
                **({"forgotten": True} if self.forgotten else {}),
                **({} if self.in_repository is None else {"in_repository": self.in_repository})}


def snapshot_row(s: Snapshot, present: bool | None = None) -> SnapshotRow:
    return SnapshotRow(s.snapshot_id, s.short_id, s.time.isoformat(), s.node, s.repository,
                       s.studies, s.instances, s.total_bytes, s.bytes_added, s.status,
                       s.verified_at is not None, present,
                       s.pair_time.isoformat() if s.pair_time else None, s.forgotten_at is not None)


def list_snapshots(ctx: Context, *, node: str | None = None, repository: str | None = None,
                   verify_repository: bool = False,
                   include_forgotten: bool = False) -> list[SnapshotRow]:
    """Storage snapshots in the catalog (not forgotten, unless ``include_forgotten``: the
    history a report draws), oldest first. With ``verify_repository`` each is checked
    against ``restic snapshots``."""
    with ctx.catalog.session() as s:
        query = select(Snapshot).where(Snapshot.site == ctx.site)
        if not include_forgotten:
            query = query.where(Snapshot.forgotten_at.is_(None))
        if node:
            query = query.where(Snapshot.node == node)
        if repository:
            query = query.where(Snapshot.repository == repository)
        rows = list(s.scalars(query.order_by(Snapshot.time, Snapshot.id)))
    if not verify_repository:
        return [snapshot_row(r) for r in rows]
    present: dict[str, set[str]] = {}
    for name in sorted({r.repository for r in rows}):
        present[name] = {snap.id for snap in ctx.restic(name).snapshots()}
    return [snapshot_row(r, r.snapshot_id in present[r.repository]) for r in rows]


def resolve_snapshot(ctx: Context, ref: str, *, node: str | None = None) -> Snapshot:
    """A catalog snapshot by full ID, short ID prefix, or ``latest`` (of ``node`` when given).
    Raises :class:`SnapshotNotFound` (exit 2)."""
    with ctx.catalog.session() as s:
        query = select(Snapshot).where(Snapshot.site == ctx.site, Snapshot.forgotten_at.is_(None))
        if node:
            query = query.where(Snapshot.node == node)
        if ref == "latest":
            found = s.scalars(query.order_by(Snapshot.time.desc(), Snapshot.id.desc()).limit(1)).first()
            if found is None:
                raise SnapshotNotFound("no snapshot in the catalog yet",
                                       hint="run `drctl backup run` first")
            return found
        if len(ref) < 4:
            raise SnapshotNotFound(f"snapshot ID {ref!r} is too short (use at least 4 characters)")
        matches = list(s.scalars(query.where(Snapshot.snapshot_id.startswith(ref))))
    if not matches:
        raise SnapshotNotFound(f"no snapshot {ref!r} in the catalog",
                               hint="see `drctl snapshots list`, or `drctl catalog rebuild`")
    if len(matches) > 1:
        raise SnapshotNotFound(f"snapshot ID {ref!r} is ambiguous ({len(matches)} match)")
    return matches[0]
