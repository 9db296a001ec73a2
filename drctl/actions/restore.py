"""``drctl restore study``: recover one study (or one patient's studies) into a node.

The most common real recovery is one study deleted by mistake or lost to a bad disk. The
manifest says which snapshot holds the study and which stored files are its instances, so
only those files are restored (restic ``--include``), checked against the manifest's size
and MD5, sent to the node with C-STORE (one association per batch, TCP_NODELAY) and
verified there with C-FIND. The work depends on the study's size, not the archive's.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from drctl.actions.context import Context
from drctl.actions.snapshots import resolve_snapshot
from drctl.catalog.models import ManifestStudy, Snapshot
from drctl.catalog.queries import GOOD_SNAPSHOTS
from drctl.errors import JobFailed, SnapshotNotFound, UsageError
from drctl.pacs.base import pacs_node
from drctl.verify.manifest import InstanceEntry
from drctl.verify.manifest_store import instances_at, snapshots_holding
from drctl.verify.phi import patient_hash

log = logging.getLogger(__name__)


@dataclass
class StudyRestore:
    study_uid: str
    snapshot_id: str
    snapshot_time: str
    instances: int
    bytes: int
    stored: int = 0
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"study_uid": self.study_uid, "snapshot_id": self.snapshot_id,
                "snapshot_time": self.snapshot_time, "instances": self.instances,
                "bytes": self.bytes, "stored": self.stored, "verified": self.verified,
                "problems": self.problems}


@dataclass
class RestoreResult:
    run_id: int | None
    to: str
    dry_run: bool
    studies: list[StudyRestore]
    duration_s: float = 0.0
    state: str = "succeeded"

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "to": self.to, "dry_run": self.dry_run,
                "state": self.state, "duration_s": round(self.duration_s, 3),
                "studies": [s.to_json() for s in self.studies]}


def snapshot_holding(ctx: Context, study_uid: str, *, at: datetime | None = None) -> Snapshot:
    """The newest good snapshot (at or before ``at``) whose manifest holds the study.
    Raises SnapshotNotFound (naming a suspect snapshot that holds it, if any).

    A snapshot taken while a circuit breaker tripped (mass rewriting: ransomware) is
    "suspect"; one restic could not read completely is "incomplete". Neither is a default
    source for a restore: the newest good snapshot holding the study is."""
    with ctx.catalog.session() as s:
        found = [snap for _, snap in snapshots_holding(s, ctx.site, study_uid, at=at)]
    best = next((snap for snap in found if snap.status in GOOD_SNAPSHOTS), None)
    if best is not None:
        return best
    when = f" at or before {at.isoformat()}" if at else ""
    if found:
        other = found[0]
        raise SnapshotNotFound(
            f"no good snapshot{when} holds study {study_uid}; snapshot {other.short_id} "
            f"holds it but is {other.status}",
            hint=f"restore from it only knowingly, with --snapshot {other.short_id}")
    raise SnapshotNotFound(f"no snapshot{when} holds study {study_uid}",
                           hint="see `drctl studies locate`")


def studies_of_patient(ctx: Context, patient_id: str) -> list[str]:
    """Study UIDs whose keyed patient hash matches ``patient_id`` (the ID itself is never
    stored)."""
    ref = ctx.settings.controller.phi_key
    if ref is None:
        raise UsageError("--patient-id needs controller.phi_key (patient IDs are only kept "
                         "as keyed hashes)")
    digest = patient_hash(ref.resolve().encode(), patient_id)
    with ctx.catalog.session() as s:
        uids = sorted(set(s.scalars(select(ManifestStudy.study_uid).where(
            ManifestStudy.site == ctx.site, ManifestStudy.patient_hash == digest))))
    if not uids:
        raise SnapshotNotFound("no snapshot holds a study of that patient")
    return uids


def run_restore(ctx: Context, study_uids: list[str], to: str, *, snapshot: str | None = None,
                at: datetime | None = None, dry_run: bool = False) -> RestoreResult:
    """Restore each study from its snapshot into node ``to``. Failures of one study are
    recorded on it (state failed) without stopping the others."""
    target = pacs_node(ctx.settings, to)
    plans = []
    for uid in study_uids:
        snap = resolve_snapshot(ctx, snapshot) if snapshot else snapshot_holding(ctx, uid, at=at)
        with ctx.catalog.session() as s:
            entries = instances_at(s, ctx.site, snap.node, snap.seq, [uid])
        if not entries:
            raise SnapshotNotFound(f"snapshot {snap.short_id} does not hold study {uid}")
        plans.append((uid, snap, entries))
    studies = [StudyRestore(uid, snap.snapshot_id, snap.time.isoformat(), len(entries),
                            sum(e.size for e in entries)) for uid, snap, entries in plans]
    result = RestoreResult(None, to, dry_run, studies)
    if dry_run:
        return result
    started = time.monotonic()
    with ctx.run("restore", node=to, details={"studies": study_uids}) as run:
        result.run_id = run.id
        for (_uid, snap, entries), study in zip(plans, studies, strict=True):
            try:
                _restore_one(ctx, snap, entries, target, study)
            except JobFailed as exc:
                study.problems.append(str(exc))
        result.duration_s = time.monotonic() - started
        failed = [s.study_uid for s in studies if not s.verified]
        if failed:
            result.state = "failed"
            run.finish("failed", f"not verified at {to}: {', '.join(failed)}")
        run.details.update(result.to_json())
    return result


def _restore_one(ctx: Context, snap: Snapshot, entries: list[InstanceEntry], target,
                 study: StudyRestore) -> None:
    source = pacs_node(ctx.settings, snap.node)
    restic = ctx.restic(snap.repository)
    work = Path(tempfile.mkdtemp(prefix="drctl-restore-", dir=_work_root(ctx)))
    try:
        restic.restore(snap.snapshot_id, work / "storage",
                       includes=["/" + e.path for e in entries])
        files = _checked_files(source, entries, work, study)
        summary = target.dicom_client().store_files(target.peer(), files)
        study.stored = summary.stored
        for problem in summary.failed:
            study.problems.append(f"C-STORE failed for {problem}")
        study.verified = _verify_at(target, study, entries)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _work_root(ctx: Context) -> Path:
    root = ctx.settings.controller.state_dir / "restore"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _checked_files(source, entries: list[InstanceEntry], work: Path,
                   study: StudyRestore) -> list[Path]:
    """Restored files checked against the manifest's size and MD5, decoded to DICOM."""
    out = work / "dicom"
    out.mkdir()
    files = []
    for entry in entries:
        path = work / "storage" / entry.path
        try:
            stored = path.read_bytes()
        except FileNotFoundError:
            study.problems.append(f"instance {entry.sop_uid}: {entry.path} not in the snapshot")
            continue
        if len(stored) != entry.size or (
                entry.md5 and hashlib.md5(stored, usedforsecurity=False).hexdigest() != entry.md5):
            study.problems.append(f"instance {entry.sop_uid}: restored file differs from the "
                                  "manifest (size or MD5)")
            continue
        dicom = out / f"{entry.sop_uid}.dcm"
        dicom.write_bytes(source.dicom_bytes(stored, entry.compressed))
        files.append(dicom)
    if not files:
        raise JobFailed(f"study {study.study_uid}: no instance could be restored")
    return files


def _verify_at(target, study: StudyRestore, entries: list[InstanceEntry]) -> bool:
    problems = verify_study_at(target, study.study_uid, {e.sop_uid for e in entries})
    study.problems += problems
    return not problems and not study.problems


def verify_study_at(target, study_uid: str, sop_uids: set[str]) -> list[str]:
    """C-FIND at ``target``: the study with every one of ``sop_uids``. Returns problems
    (empty when verified)."""
    with target.dicom_client().open(target.peer()) as session:
        if study_uid not in session.find_studies_by_uid([study_uid]):
            return [f"study {study_uid} is not found at {target.name} after C-STORE"]
        present = {i.sop_instance_uid for i in session.find_instances(study_uid)}
    missing = sorted(sop_uids - present)
    if missing:
        return [f"{len(missing)} instance(s) of {study_uid} missing at {target.name}, "
                f"e.g. {missing[0]}"]
    return []
