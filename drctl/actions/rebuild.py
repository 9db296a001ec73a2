"""``drctl catalog rebuild``: the catalog from the repository alone.

The controller may be lost in the same disaster as the primary. Everything needed to
recover lives in the repository as drctl records: manifests (each a snapshot's full study
list and its instance delta, replayed in order per node), index copies, acknowledgements
and drill verifications. Replaying them gives the same snapshots, manifests and verified
marks the lost catalog had.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import delete, select

from drctl.actions.context import Context
from drctl.catalog.models import (
    Acknowledgement,
    Drill,
    Finding,
    IndexCopy,
    ManifestInstance,
    ManifestStudy,
    Record,
    Snapshot,
    Vanished,
)
from drctl.errors import UsageError
from drctl.restic.messages import Snapshot as ResticSnapshot
from drctl.verify import records
from drctl.verify.manifest import InstanceEntry, ManifestChanges, StudyEntry
from drctl.verify.manifest_store import apply_changes

log = logging.getLogger(__name__)


def rebuild_catalog(ctx: Context, repository: str, *, replace: bool = False) -> dict:
    """Rebuild the site's catalog rows of ``repository`` from its records. Refuses when the
    catalog already holds snapshots of it unless ``replace``."""
    restic = ctx.restic(repository)
    restic.probe()
    with ctx.catalog.session() as s:
        existing = s.scalar(select(Snapshot.id).where(Snapshot.site == ctx.site,
                                                      Snapshot.repository == repository).limit(1))
        if existing is not None and not replace:
            raise UsageError(f"the catalog already holds snapshots of repository {repository}; "
                             "rebuild into an empty catalog or pass --replace")
        if existing is not None:
            _forget_repository_rows(s, ctx.site, repository)
    found = [x for x in restic.snapshots(tags=["drctl"]) if x.tag_value("site") == ctx.site]
    by_kind: dict[str, list[ResticSnapshot]] = defaultdict(list)
    for snap in found:
        by_kind[snap.tag_value("kind") or "?"].append(snap)
    storage = {x.id for x in by_kind["storage"]}
    nodes: dict[str, list[ResticSnapshot]] = defaultdict(list)
    for rec in by_kind["manifest"]:
        nodes[rec.tag_value("node") or "?"].append(rec)
    counts = {"snapshots": 0, "manifests": 0, "verifications": 0, "acknowledgements": 0}
    for node, recs in sorted(nodes.items()):
        recs.sort(key=lambda r: int(r.tag_value("seq") or 0))
        counts["snapshots"] += _replay_node(ctx, restic, repository, node, recs, storage)
        counts["manifests"] += len(recs)
    counts["acknowledgements"] = _apply_acks(ctx, restic, by_kind["ack"])
    counts["verifications"] = _apply_verifications(ctx, restic, repository,
                                                   by_kind["verification"])
    counts["storage_snapshots_without_manifest"] = len(
        storage - _snapshot_ids(ctx, repository))
    return {"repository": repository, **counts}


def _snapshot_ids(ctx: Context, repository: str) -> set[str]:
    with ctx.catalog.session() as s:
        return set(s.scalars(select(Snapshot.snapshot_id).where(
            Snapshot.site == ctx.site, Snapshot.repository == repository)))


def _forget_repository_rows(s, site: str, repository: str) -> None:
    nodes = set(s.scalars(select(Snapshot.node).where(Snapshot.site == site,
                                                      Snapshot.repository == repository)))
    s.execute(delete(Snapshot).where(Snapshot.site == site, Snapshot.repository == repository))
    s.execute(delete(IndexCopy).where(IndexCopy.site == site, IndexCopy.repository == repository))
    s.execute(delete(Record).where(Record.site == site, Record.repository == repository))
    for model in (ManifestStudy, ManifestInstance, Vanished):
        s.execute(delete(model).where(model.site == site, model.node.in_(nodes)))


def _replay_node(ctx, restic, repository: str, node: str, recs: list[ResticSnapshot],
                 storage: set[str]) -> int:
    previous: dict[str, StudyEntry] = {}
    copies: dict[str, int] = {}
    written = 0
    for rec in recs:
        data = restic.dump(rec.id, "/" + records.record_filename("manifest", node))
        doc = records.decode(data, records.FORMAT_MANIFEST)
        studies = {row[0]: StudyEntry(**records.unpack(row, records.STUDY_FIELDS))
                   for row in doc["studies"]}
        added = [InstanceEntry(**records.unpack(r, records.INSTANCE_FIELDS))
                 for r in doc["instances_added"]]
        changes = ManifestChanges(
            studies_added=[studies[u] for u in sorted(set(studies) - set(previous))],
            studies_changed=[studies[u] for u in sorted(set(studies) & set(previous))
                             if not studies[u].same_content(previous[u])
                             or studies[u].bytes != previous[u].bytes],
            studies_vanished=sorted(set(previous) - set(studies)),
            instances_added=added,
            instances_removed=[tuple(k) for k in doc["instances_removed"]],
        )
        with ctx.catalog.session() as s:
            apply_changes(s, ctx.site, node, doc["seq"], changes, added, studies)
            copy_id = _index_copy_row(s, ctx, repository, node, doc, copies)
            _snapshot_row(s, ctx, repository, node, doc, rec, copy_id, storage)
            _vanished_and_findings(s, ctx.site, node, doc)
        previous = studies
        written += 1
    return written


def _index_copy_row(s, ctx, repository, node, doc, copies: dict[str, int]) -> int | None:
    info = doc.get("index_copy") or {}
    record_id = info.get("record_id")
    if not record_id:
        return None
    if record_id not in copies:
        row = IndexCopy(repository=repository, record_id=record_id, site=ctx.site, node=node,
                        kind=info["kind"], method=info["method"],
                        taken_at=datetime.fromisoformat(info["taken_at"]), bytes=info["bytes"],
                        outage_s=info.get("outage_s"), change_seq=info.get("change_seq"),
                        max_internal_id=info.get("max_internal_id"),
                        studies=len(doc["studies"]),
                        instances=sum(r[2] for r in doc["studies"]), integrity="ok")
        s.add(row)
        s.add(Record(repository=repository, record_id=record_id, kind="index", site=ctx.site,
                     node=node, refers_to=None, time=row.taken_at))
        s.flush()
        copies[record_id] = row.id
    return copies[record_id]


def _snapshot_row(s, ctx, repository, node, doc, rec: ResticSnapshot, copy_id,
                  storage: set[str]) -> None:
    info = doc["snapshot"]
    s.add(Snapshot(
        repository=repository, snapshot_id=info["id"], short_id=info["short_id"], site=ctx.site,
        node=node, seq=doc["seq"], time=datetime.fromisoformat(info["time"]),
        pair_time=datetime.fromisoformat(doc["pair_time"]), index_copy_id=copy_id,
        status=info["status"], files_new=info["files_new"], files_changed=info["files_changed"],
        bytes_added=info["bytes_added"], total_files=info["total_files"],
        total_bytes=info["total_bytes"], studies=len(doc["studies"]),
        instances=sum(r[2] for r in doc["studies"]), manifest_record=rec.id,
        forgotten_at=None if info["id"] in storage else datetime.now(UTC)))
    s.add(Record(repository=repository, record_id=rec.id, kind="manifest", site=ctx.site,
                 node=node, refers_to=info["id"], time=rec.time))


def _vanished_and_findings(s, site: str, node: str, doc: dict) -> None:
    now = datetime.now(UTC)
    for uid in doc.get("vanished", []):
        s.add(Vanished(site=site, node=node, study_uid=uid, seq=doc["seq"], detected_at=now))
    for f in doc.get("findings", []):
        s.add(Finding(kind=f["kind"], study_uid=f.get("study_uid"), detail=f.get("detail", ""),
                      at=now))


def _apply_acks(ctx, restic, recs: list[ResticSnapshot]) -> int:
    applied = 0
    for rec in sorted(recs, key=lambda r: r.time):
        doc = records.decode(restic.dump(rec.id, "/" + records.record_filename("ack", None)),
                             "drctl-ack/1")
        at = datetime.fromisoformat(doc["at"])
        with ctx.catalog.session() as s:
            for uid in doc["study_uids"]:
                rows = list(s.scalars(select(Vanished).where(
                    Vanished.site == ctx.site, Vanished.study_uid == uid,
                    Vanished.acked_at.is_(None), Vanished.detected_at <= datetime.now(UTC))))
                for row in rows:
                    row.acked_at, row.acked_by, row.ack_reason = at, doc["by"], doc["reason"]
                if not rows:
                    s.add(Acknowledgement(site=ctx.site, study_uid=uid, reason=doc["reason"],
                                          by=doc["by"], at=at))
                applied += 1
    return applied


def _apply_verifications(ctx, restic, repository: str, recs: list[ResticSnapshot]) -> int:
    """Drill verification records: mark snapshots verified and restore drill history."""
    applied = 0
    for rec in sorted(recs, key=lambda r: r.time):
        node = rec.tag_value("node")
        doc = records.decode(restic.dump(rec.id, "/" + records.record_filename("verification", node)),
                             records.FORMAT_VERIFICATION)
        drill = doc["drill"]
        with ctx.catalog.session() as s:
            row = Drill(site=ctx.site, node=doc["node"], repository=repository,
                        snapshot_id=doc["snapshot_id"], standby=drill["standby"],
                        scope=drill["scope"], verdict=drill["verdict"],
                        started_at=datetime.fromisoformat(drill["started_at"]),
                        ended_at=datetime.fromisoformat(drill["ended_at"]),
                        studies_expected=drill["studies_expected"],
                        studies_verified=drill["studies_verified"],
                        instances_sampled=drill.get("instances_sampled", 0),
                        rto_s=drill.get("rto_s"), rto_projected=drill.get("rto_projected", False),
                        rpo_s=drill.get("rpo_s"), phases=drill.get("phases", {}),
                        record_id=rec.id, details={"rebuilt": True})
            s.add(row)
            s.flush()
            for f in doc.get("findings", []):
                s.add(Finding(drill_id=row.id, kind=f["kind"], study_uid=f.get("study_uid"),
                              detail=f.get("detail", ""), at=row.ended_at))
            if drill["verdict"] == "passed":
                snap = s.scalars(select(Snapshot).where(
                    Snapshot.repository == repository,
                    Snapshot.snapshot_id == doc["snapshot_id"])).first()
                if snap is not None and (snap.verified_at is None or snap.verified_at < row.ended_at):
                    snap.verified_at, snap.verified_drill_id = row.ended_at, row.id
            s.add(Record(repository=repository, record_id=rec.id, kind="verification",
                         site=ctx.site, node=node, refers_to=doc["snapshot_id"], time=rec.time))
        applied += 1
    return applied
