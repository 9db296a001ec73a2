"""The end of a backup: the manifest record goes into the repository, then everything goes
into the catalog in one transaction (snapshot, index copy, manifest rows, vanished studies,
alarms, findings). A crash before the transaction leaves the catalog as it was."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from drctl.actions.context import Context
from drctl.actions.indexcopy import add_copy_rows
from drctl.catalog.models import (
    Acknowledgement,
    Alarm,
    Finding,
    IndexCopy,
    Record,
    Snapshot,
    Vanished,
)
from drctl.restic.argv import restic_host
from drctl.verify import records
from drctl.verify.manifest import current_studies
from drctl.verify.manifest_store import apply_changes, next_seq


def record_of_copy(ctx: Context, row_id: int | None) -> str:
    with ctx.catalog.session() as s:
        return s.scalar(select(IndexCopy.record_id).where(IndexCopy.id == row_id)) or ""


def manifest_document(ctx: Context, *, node: str, seq: int, repository: str, snapshot, summary,
                      stored, delta, changes, new_entries, findings, previous, pair_time,
                      status: str, studies: dict) -> dict:
    """The manifest record: the full study list of the snapshot and the instance delta."""
    copy = stored.copy
    return {
        "format": records.FORMAT_MANIFEST,
        "site": ctx.site, "node": node, "seq": seq, "repository": repository,
        "previous_seq": previous.seq,
        "snapshot": {"id": snapshot.id, "short_id": snapshot.short_id,
                     "time": snapshot.time.isoformat(), "files_new": summary.files_new,
                     "files_changed": summary.files_changed, "bytes_added": summary.data_added,
                     "total_files": summary.total_files_processed,
                     "total_bytes": summary.total_bytes_processed, "status": status},
        "pair_time": pair_time.isoformat(),
        "index_copy": {"record_id": stored.record.id if stored.record else
                       record_of_copy(ctx, stored.row_id),
                       "kind": copy.kind, "method": copy.method,
                       "taken_at": copy.taken_at.isoformat(), "bytes": copy.bytes,
                       "outage_s": copy.outage_s, "change_seq": copy.change_seq,
                       "max_internal_id": delta.max_internal_id, "reused": stored.reused},
        "studies": sorted(records.pack(s, records.STUDY_FIELDS) for s in studies.values()),
        "instances_added": [records.pack(e, records.INSTANCE_FIELDS) for e in new_entries],
        "instances_removed": [list(k) for k in changes.instances_removed],
        "vanished": changes.studies_vanished,
        "findings": [f.to_json() for f in findings],
    }


def commit(ctx: Context, run, result, *, restic, repo_name, pacs, stored, snapshot, summary,
           previous, delta, changes, new_entries, findings, alarms, state, reason,
           before, clock) -> None:
    """Store the manifest record, then the catalog rows, each timed by ``clock`` (the
    backup's phase clock: ``manifest_record_s``, ``catalog_s``)."""
    node = pacs.name
    with ctx.catalog.session() as s:
        seq = next_seq(s, ctx.site, node)
    pair_time = min(stored.copy.taken_at, snapshot.time)
    status = {"succeeded": "complete", "warning": "warning"}.get(state, "suspect")
    if reason and "incomplete" in reason:
        status = "incomplete"
    removed = set(changes.instances_removed)
    removed_bytes = {uid: sum(e.size for e in entries if e.key in removed)
                     for uid, entries in before.items()}
    studies = current_studies(previous, delta, changes, new_entries, removed_bytes)
    document = manifest_document(ctx, node=node, seq=seq, repository=repo_name,
                                 snapshot=snapshot, summary=summary, stored=stored, delta=delta,
                                 changes=changes, new_entries=new_entries, findings=findings,
                                 previous=previous, pair_time=pair_time, status=status,
                                 studies=studies)
    ctx.check_fence()
    with clock("manifest_record"):
        manifest_record = restic.backup_bytes(
            records.encode(document), filename=records.record_filename("manifest", node),
            host=restic_host(ctx.site, node),
            tags=records.record_tags("manifest", site=ctx.site, node=node, seq=seq,
                                     snapshot=snapshot.short_id))
    now = datetime.now(UTC)
    with clock("catalog"), ctx.catalog.session() as s:
        copy_row = add_copy_rows(s, ctx, stored, repository=repo_name, run_id=run.id,
                                 max_internal_id=delta.max_internal_id,
                                 studies=len(delta.studies),
                                 instances=sum(x.instances for x in delta.studies.values()))
        apply_changes(s, ctx.site, node, seq, changes, new_entries, studies)
        s.add(Snapshot(repository=repo_name, snapshot_id=snapshot.id, short_id=snapshot.short_id,
                       site=ctx.site, node=node, seq=seq, time=snapshot.time,
                       pair_time=pair_time, index_copy_id=copy_row, run_id=run.id,
                       status=status, files_new=summary.files_new,
                       files_changed=summary.files_changed, bytes_added=summary.data_added,
                       total_files=summary.total_files_processed,
                       total_bytes=summary.total_bytes_processed, studies=len(delta.studies),
                       instances=sum(x.instances for x in delta.studies.values()),
                       manifest_record=manifest_record.id))
        s.add(Record(repository=repo_name, record_id=manifest_record.id, kind="manifest",
                     site=ctx.site, node=node, refers_to=snapshot.id, time=manifest_record.time))
        for f in findings:
            s.add(Finding(run_id=run.id, kind=f.kind, study_uid=f.study_uid, detail=f.detail,
                          at=now))
        for kind, detail in alarms:
            s.add(Alarm(site=ctx.site, node=node, kind=kind, detail=detail, run_id=run.id,
                        opened_at=now))
        _record_vanished(s, ctx.site, node, seq, changes.studies_vanished, run.id, now)
        unacked = list(s.scalars(select(Vanished.study_uid).where(
            Vanished.site == ctx.site, Vanished.node == node, Vanished.acked_at.is_(None),
        ).order_by(Vanished.study_uid)))
        open_alarms = list(s.scalars(select(Alarm.detail).where(
            Alarm.site == ctx.site, Alarm.node == node, Alarm.closed_at.is_(None))))
    result.seq = seq
    result.studies = len(delta.studies)
    result.instances = sum(x.instances for x in delta.studies.values())
    result.studies_added = len(changes.studies_added)
    result.vanished = changes.studies_vanished
    result.unacknowledged_vanished = unacked
    result.findings = [f.to_json() for f in findings]
    result.alarms = open_alarms
    if state == "succeeded" and unacked:
        state, reason = "warning", (f"{len(unacked)} vanished stud"
                                    f"{'y' if len(unacked) == 1 else 'ies'} not acknowledged: "
                                    + ", ".join(unacked[:10]) + (" ..." if len(unacked) > 10 else ""))
    elif state == "succeeded" and open_alarms:
        state, reason = "warning", "circuit breaker still open: " + "; ".join(open_alarms)
    if state != "succeeded":
        run.finish(state, reason)


def _record_vanished(s, site: str, node: str, seq: int, uids: list[str], run_id: int,
                     now: datetime) -> None:
    """Vanished rows; acknowledgements given ahead of time are applied (and used up)."""
    if not uids:
        return
    acks = {a.study_uid: a for a in s.scalars(select(Acknowledgement).where(
        Acknowledgement.site == site, Acknowledgement.used.is_(False),
        Acknowledgement.study_uid.in_(uids)))}
    for uid in uids:
        ack = acks.get(uid)
        s.add(Vanished(site=site, node=node, study_uid=uid, seq=seq, run_id=run_id,
                       detected_at=now, acked_at=ack.at if ack else None,
                       acked_by=ack.by if ack else None, ack_reason=ack.reason if ack else None))
        if ack:
            s.execute(update(Acknowledgement).where(Acknowledgement.id == ack.id).values(used=True))
