"""Manifests in the catalog: temporal rows, valid for snapshot sequences
``[first_seq, end_seq)``. A new snapshot ends the rows that changed and inserts new ones;
rows that did not change are not touched (work proportional to change)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from drctl.catalog.models import ManifestInstance, ManifestStudy, Snapshot
from drctl.verify.manifest import InstanceEntry, ManifestChanges, PreviousManifest, StudyEntry

BATCH = 500


def _batches(items: list, size: int = BATCH) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _study(row: ManifestStudy) -> StudyEntry:
    return StudyEntry(row.study_uid, row.series, row.instances, row.modalities or "",
                      row.study_date, row.patient_hash, row.pacs_id, row.bytes or 0)


def _instance(row: ManifestInstance) -> InstanceEntry:
    return InstanceEntry(row.sop_uid, row.series_uid, row.study_uid, row.sop_class,
                         row.transfer_syntax, row.path, row.size, row.md5, row.digest,
                         row.compressed, row.internal_id)


def next_seq(session: Session, site: str, node: str) -> int:
    """The sequence number of the node's next snapshot (forgotten ones count)."""
    last = session.scalar(select(func.max(Snapshot.seq)).where(Snapshot.site == site,
                                                                Snapshot.node == node))
    return (last or 0) + 1


def load_previous(session: Session, site: str, node: str) -> PreviousManifest:
    """The node's newest manifest (the open rows) and the highest instance key seen."""
    seq = session.scalar(select(func.max(ManifestStudy.first_seq)).where(
        ManifestStudy.site == site, ManifestStudy.node == node))
    last_snap = session.scalar(select(func.max(Snapshot.seq)).where(
        Snapshot.site == site, Snapshot.node == node))
    if last_snap is None and seq is None:
        return PreviousManifest(None, {}, 0)
    studies = {
        row.study_uid: _study(row)
        for row in session.scalars(select(ManifestStudy).where(
            ManifestStudy.site == site, ManifestStudy.node == node,
            ManifestStudy.end_seq.is_(None)))
    }
    max_id = session.scalar(select(func.max(ManifestInstance.internal_id)).where(
        ManifestInstance.site == site, ManifestInstance.node == node)) or 0
    return PreviousManifest(last_snap or seq, studies, int(max_id))


def open_instances(session: Session, site: str, node: str,
                   study_uids: Iterable[str]) -> dict[str, list[InstanceEntry]]:
    """The previous manifest's instances of the given studies."""
    found: dict[str, list[InstanceEntry]] = defaultdict(list)
    for batch in _batches(sorted(set(study_uids))):
        for row in session.scalars(select(ManifestInstance).where(
                ManifestInstance.site == site, ManifestInstance.node == node,
                ManifestInstance.end_seq.is_(None), ManifestInstance.study_uid.in_(batch))):
            found[row.study_uid].append(_instance(row))
    return dict(found)


def instances_by_path(session: Session, site: str, node: str,
                      paths: Iterable[str]) -> list[InstanceEntry]:
    """Open instances whose stored file is one of ``paths``."""
    out: list[InstanceEntry] = []
    for batch in _batches(sorted(set(paths))):
        out += [_instance(r) for r in session.scalars(select(ManifestInstance).where(
            ManifestInstance.site == site, ManifestInstance.node == node,
            ManifestInstance.end_seq.is_(None), ManifestInstance.path.in_(batch)))]
    return out


def apply_changes(session: Session, site: str, node: str, seq: int, changes: ManifestChanges,
                  added: list[InstanceEntry], studies: dict[str, StudyEntry]) -> None:
    """Write snapshot ``seq``'s manifest as changes to the open rows: end the rows of
    changed and vanished studies and removed instances, insert the new ones. ``studies``
    is the full new study map (see :func:`drctl.verify.manifest.current_studies`)."""
    ended_studies = [s.study_uid for s in changes.studies_changed] + changes.studies_vanished
    for batch in _batches(ended_studies):
        session.execute(update(ManifestStudy).where(
            ManifestStudy.site == site, ManifestStudy.node == node,
            ManifestStudy.end_seq.is_(None), ManifestStudy.study_uid.in_(batch),
        ).values(end_seq=seq))
    for batch in _batches(changes.instances_removed):
        session.execute(update(ManifestInstance).where(
            ManifestInstance.site == site, ManifestInstance.node == node,
            ManifestInstance.end_seq.is_(None),
            or_(*[and_(ManifestInstance.sop_uid == sop, ManifestInstance.path == path)
                  for sop, path in batch]),
        ).values(end_seq=seq))
    rows = [{"site": site, "node": node, "study_uid": e.study_uid, "first_seq": seq,
             "end_seq": None, "series": e.series, "instances": e.instances,
             "modalities": e.modalities, "study_date": e.study_date,
             "patient_hash": e.patient_hash, "bytes": e.bytes, "pacs_id": e.pacs_id}
            for e in (studies[x.study_uid] for x in [*changes.studies_added,
                                                     *changes.studies_changed])]
    for batch in _batches(rows):
        session.execute(insert(ManifestStudy), batch)
    inst_rows = [{"site": site, "node": node, "study_uid": e.study_uid,
                  "series_uid": e.series_uid, "sop_uid": e.sop_uid, "sop_class": e.sop_class,
                  "transfer_syntax": e.transfer_syntax, "path": e.path, "size": e.size,
                  "md5": e.md5, "digest": e.digest, "compressed": e.compressed,
                  "internal_id": e.internal_id, "first_seq": seq, "end_seq": None}
                 for e in added]
    for batch in _batches(inst_rows, 2000):
        session.execute(insert(ManifestInstance), batch)


def studies_at(session: Session, site: str, node: str, seq: int) -> list[StudyEntry]:
    """The studies of snapshot ``seq`` (sorted by UID)."""
    rows = session.scalars(select(ManifestStudy).where(
        ManifestStudy.site == site, ManifestStudy.node == node,
        ManifestStudy.first_seq <= seq,
        or_(ManifestStudy.end_seq.is_(None), ManifestStudy.end_seq > seq),
    ).order_by(ManifestStudy.study_uid))
    return [_study(r) for r in rows]


def instances_at(session: Session, site: str, node: str, seq: int,
                 study_uids: Iterable[str] | None = None) -> list[InstanceEntry]:
    """The instances of snapshot ``seq`` (optionally only of some studies)."""
    query = select(ManifestInstance).where(
        ManifestInstance.site == site, ManifestInstance.node == node,
        ManifestInstance.first_seq <= seq,
        or_(ManifestInstance.end_seq.is_(None), ManifestInstance.end_seq > seq))
    if study_uids is None:
        return [_instance(r) for r in session.scalars(query)]
    out: list[InstanceEntry] = []
    for batch in _batches(sorted(set(study_uids))):
        out += [_instance(r) for r in session.scalars(
            query.where(ManifestInstance.study_uid.in_(batch)))]
    return out


def snapshots_holding(session: Session, site: str, study_uid: str, *,
                      at: datetime | None = None, statuses: tuple[str, ...] | None = None,
                      ) -> list[tuple[ManifestStudy, Snapshot]]:
    """Every snapshot (not forgotten; taken at or before ``at``; of ``statuses``) whose
    manifest holds the study, with the manifest row describing it there, newest first.
    One query: a manifest row holds the study from ``first_seq`` until ``end_seq``."""
    query = (
        select(ManifestStudy, Snapshot)
        .join(Snapshot, and_(
            Snapshot.site == ManifestStudy.site, Snapshot.node == ManifestStudy.node,
            Snapshot.seq >= ManifestStudy.first_seq,
            or_(ManifestStudy.end_seq.is_(None), Snapshot.seq < ManifestStudy.end_seq)))
        .where(ManifestStudy.site == site, ManifestStudy.study_uid == study_uid,
               Snapshot.forgotten_at.is_(None))
        .order_by(Snapshot.time.desc(), Snapshot.id.desc()))
    if at is not None:
        query = query.where(Snapshot.time <= at)
    if statuses is not None:
        query = query.where(Snapshot.status.in_(statuses))
    return [(row, snap) for row, snap in session.execute(query)]
