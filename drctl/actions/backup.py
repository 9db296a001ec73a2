"""``drctl backup run``: index copy, then storage snapshot, then manifest.

Consistency order (architecture.md): the index is copied first, then the storage area is
snapshotted, so every index row points at a file the snapshot holds (except studies
deleted in between, which drills report). The manifest is built from the index copy,
incrementally; new and modified files are checked against the index; vanished studies
and mass changes are caught here. Nothing enters the catalog until restic has the
snapshot and its manifest record: the catalog never lists a snapshot restic lacks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from drctl import locks
from drctl.actions import backup_record as rec
from drctl.actions.context import Context
from drctl.actions.indexcopy import StoredCopy, reuse_copy, take_copy
from drctl.errors import UsageError
from drctl.pacs.base import PacsNode, pacs_node
from drctl.restic.argv import TAG_DRCTL, restic_host, tag
from drctl.restic.messages import BackupStatus
from drctl.restic.runner import Restic
from drctl.verify.integrity import IntegrityStats, NewInstances, check_modified, examine_new
from drctl.verify.manifest import PreviousManifest, plan_changes, read_delta
from drctl.verify.manifest_store import instances_by_path, load_previous, open_instances

log = logging.getLogger(__name__)


@dataclass
class BackupResult:
    run_id: int | None
    snapshot_id: str | None
    node: str
    repository: str
    files_new: int = 0
    files_changed: int = 0
    bytes_added: int = 0
    studies: int | None = None
    instances: int | None = None
    duration_s: float = 0.0
    state: str = "running"
    reason: str | None = None
    seq: int | None = None
    index_copy: dict = field(default_factory=dict)
    studies_added: int = 0
    vanished: list[str] = field(default_factory=list)
    unacknowledged_vanished: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)  # seconds per step

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id, "snapshot_id": self.snapshot_id, "node": self.node,
            "repository": self.repository, "files_new": self.files_new,
            "bytes_added": self.bytes_added, "studies": self.studies,
            "instances": self.instances, "duration_s": round(self.duration_s, 3),
            "state": self.state, "reason": self.reason, "files_changed": self.files_changed,
            "seq": self.seq, "index_copy": self.index_copy, "studies_added": self.studies_added,
            "vanished": self.vanished, "unacknowledged_vanished": self.unacknowledged_vanished,
            "findings": self.findings, "alarms": self.alarms, "manifest": self.manifest,
            "phases": self.phases,
        }


def phi_key(ctx: Context) -> bytes | None:
    ref = ctx.settings.controller.phi_key
    return ref.resolve().encode("utf-8") if ref else None


def storage_tags(ctx: Context, node: str, kind: str, index_record: str) -> list[str]:
    return [TAG_DRCTL, tag("kind", "storage"), tag("site", ctx.site), tag("node", node),
            tag("pacs", kind), tag("index", index_record[:8])]


def run_backup(ctx: Context, node: str, *, repository: str | None = None,
               dry_run: bool = False, index_copy: str = "auto",
               on_status: Callable[[BackupStatus], None] | None = None) -> BackupResult:
    """Back up primary ``node``. Returns the result (state succeeded / warning / failed);
    raises typed errors when the job cannot start (repository or node unreachable: exit 3)."""
    settings = ctx.node(node)
    if settings.role != "primary":
        raise UsageError(f"node {node} is a standby; back up its primary")
    repo_name = repository or ctx.settings.repository_of(node)
    restic = ctx.restic(repo_name)
    pacs = pacs_node(ctx.settings, node)
    if dry_run:
        return _dry_run(ctx, pacs, restic, repo_name)
    lock_file = locks.lock_path(ctx.settings.controller.state_dir / "locks", "node",
                                f"{ctx.site}/{node}")
    with locks.try_hold(lock_file, what=f"backup of node {node}"):
        with ctx.run("backup", node=node, repository=repo_name) as run:
            result = BackupResult(run.id, None, node, repo_name)
            started = time.monotonic()
            try:
                _backup(ctx, pacs, restic, repo_name, index_copy, on_status, run, result)
            finally:
                result.duration_s = time.monotonic() - started
                run.details.update(result.to_json())
            result.state = "succeeded" if run.state == "running" else run.state
            result.reason = run.reason
    return result


def _backup(ctx, pacs: PacsNode, restic: Restic, repo_name: str, index_copy: str,
            on_status, run, result: BackupResult) -> None:
    restic.probe()
    with ctx.catalog.session() as s:
        previous = load_previous(s, ctx.site, pacs.name)
    key = phi_key(ctx)
    clock = _Clock(result.phases)
    with clock("index_copy"):
        stored = _index_phase(ctx, pacs, restic, repo_name, previous, key, index_copy, clock)
    delta = stored.copy.inventory
    result.index_copy = {"method": stored.copy.method, "kind": stored.copy.kind,
                         "taken_at": stored.copy.taken_at.isoformat(), "reused": stored.reused,
                         "outage_s": stored.copy.outage_s, "bytes": stored.copy.bytes}
    ctx.check_fence()
    record_id = stored.record.id if stored.record else rec.record_of_copy(ctx, stored.row_id)
    with clock("plan"), ctx.catalog.session() as s:
        touched = list(delta.recheck) + sorted(set(previous.studies) - set(delta.studies))
        before = open_instances(s, ctx.site, pacs.name, touched)
        changes = plan_changes(previous, delta, before)
    with clock("snapshot"), _examined_meanwhile(changes.instances_added, pacs, clock) as pending:
        output, code, snapshot = restic.backup(
            pacs.storage_dir, host=restic_host(ctx.site, pacs.name),
            tags=storage_tags(ctx, pacs.name, pacs.kind, record_id),
            excludes=pacs.storage_excludes(), on_status=on_status)
    new = pending.result()
    summary = output.summary
    result.snapshot_id = snapshot.id
    result.files_new, result.files_changed = summary.files_new, summary.files_changed
    result.bytes_added = summary.data_added
    with clock("modified"):
        modified = _modified_findings(ctx, pacs, output.modified_files, new.stats,
                                      {e.path for e in new.entries})
    findings = new.findings + modified.findings
    result.manifest = {"rows_read": delta.rows_read, "full_read": delta.full,
                       "files_read": new.stats.files_read, "bytes_read": new.stats.bytes_read,
                       "digests": new.stats.digests, "instances_added": len(new.entries),
                       "instances_removed": len(changes.instances_removed)}
    alarms = _alarms(ctx, pacs, previous, changes, modified.count)
    state, reason = _verdict(code, findings, alarms)
    with clock("record"):
        rec.commit(ctx, run, result, restic=restic, repo_name=repo_name, pacs=pacs,
                   stored=stored, snapshot=snapshot, summary=summary, previous=previous,
                   delta=delta, changes=changes, new_entries=new.entries, findings=findings,
                   alarms=alarms, state=state, reason=reason, before=before, clock=clock)


class _Clock:
    """Seconds per step of a backup, into ``phases`` (rounded to the millisecond)."""

    def __init__(self, phases: dict):
        self.phases = phases

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)

    def add(self, name: str, seconds: float) -> None:
        self.phases[f"{name}_s"] = round(self.phases.get(f"{name}_s", 0.0) + seconds, 3)


INTEGRITY_WORKERS = 2  # files hashed at a time (hashlib releases the GIL)
INTEGRITY_CHUNK = 16


@contextlib.contextmanager
def _examined_meanwhile(rows: list, pacs: PacsNode, clock: _Clock) -> Iterator[Future]:
    """Examine the new instances' files (:func:`examine_new`: MD5 against the index,
    content digest) in worker threads while the block runs restic over the same files.
    The hashing releases the GIL, so the pass uses the cores restic leaves idle instead
    of adding its time after restic's; two workers because one alone cannot keep up
    with restic on clinical-size images. If the block fails, the workers stop at their
    next file and the error goes on."""
    stop = threading.Event()
    chunks = [rows[i : i + INTEGRITY_CHUNK] for i in range(0, len(rows), INTEGRITY_CHUNK)]

    cpu_lock = threading.Lock()

    def examine(chunk: list) -> NewInstances:
        started = time.thread_time()
        unstopped = (row for row in chunk if not stop.is_set())
        try:
            return examine_new(unstopped, pacs.read_stored, pacs.dicom_bytes)
        finally:
            with cpu_lock:
                clock.add("integrity_cpu", time.thread_time() - started)

    def examine_all() -> NewInstances:
        with clock("integrity"), ThreadPoolExecutor(
            max_workers=INTEGRITY_WORKERS, thread_name_prefix="drctl-integrity"
        ) as workers:
            return _merged(list(workers.map(examine, chunks)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="drctl-integrity") as pool:
        pending = pool.submit(examine_all)
        try:
            yield pending
        except BaseException:
            stop.set()
            raise


def _merged(parts: list[NewInstances]) -> NewInstances:
    """The parts' entries and findings in order, their counts added up."""
    out = NewInstances()
    for part in parts:
        out.entries += part.entries
        out.findings += part.findings
        out.stats.files_read += part.stats.files_read
        out.stats.bytes_read += part.stats.bytes_read
        out.stats.digests += part.stats.digests
    return out


def _index_phase(ctx, pacs, restic, repo_name, previous: PreviousManifest, key,
                 mode: str, clock: _Clock) -> StoredCopy:
    def read(inventory):
        with clock("manifest_read"):
            return read_delta(inventory, previous, key)

    node = ctx.settings.node[pacs.name]
    reuse = mode == "reuse" or (mode == "auto" and ctx.settings.schedule.index_copy is not None
                                and node.index_kind == "sqlite")
    if reuse:
        stored = reuse_copy(ctx, pacs, restic, read, repo_name)
        if stored is not None:
            return stored
        log.info("node %s: no stored index copy to reuse; taking a fresh one", pacs.name)
    return take_copy(ctx, pacs, restic, read)


@dataclass
class _Modified:
    findings: list
    count: int


def _modified_findings(ctx, pacs, modified_paths: list[str], stats: IntegrityStats,
                       new_paths: set[str]) -> _Modified:
    """Check files restic saw modified against their recorded MD5."""
    paths = [p.lstrip("/") for p in modified_paths]
    paths = [p for p in paths if p not in new_paths]
    if not paths:
        return _Modified([], 0)
    with ctx.catalog.session() as s:
        entries = instances_by_path(s, ctx.site, pacs.name, paths)
    findings = check_modified(entries, pacs.read_stored, stats)
    return _Modified(findings, len(entries))


def _alarms(ctx, pacs, previous: PreviousManifest, changes, modified: int) -> list[tuple[str, str]]:
    """Circuit breakers: mass deletion and mass modification (ransomware looks like both)."""
    node = ctx.settings.node[pacs.name]
    alarms = []
    if previous.studies:
        share = len(changes.studies_vanished) / len(previous.studies)
        if changes.studies_vanished and share > node.vanished_alarm:
            alarms.append(("mass_deletion", f"{len(changes.studies_vanished)} of "
                           f"{len(previous.studies)} studies ({share:.0%}) vanished since the "
                           f"previous snapshot (vanished_alarm {node.vanished_alarm:.0%})"))
    total = sum(s.instances for s in previous.studies.values())
    if total and modified and modified / total > node.modified_alarm:
        alarms.append(("mass_modification", f"{modified} of {total} stored files "
                       f"({modified / total:.0%}) were rewritten since the previous snapshot "
                       f"(modified_alarm {node.modified_alarm:.0%})"))
    return alarms


def _verdict(code: int, findings: list, alarms: list) -> tuple[str, str | None]:
    if code == 3:
        return "failed", "restic could not read some source files (snapshot incomplete)"
    if alarms:
        return "failed", "circuit breaker: " + "; ".join(detail for _, detail in alarms)
    if findings:
        kinds = sorted({f.kind for f in findings})
        return "warning", f"{len(findings)} source integrity finding(s): {', '.join(kinds)}"
    return "succeeded", None


def _dry_run(ctx, pacs, restic: Restic, repo_name: str) -> BackupResult:
    restic.open()  # a dry run proves the password too
    node = ctx.settings.node[pacs.name]
    result = BackupResult(None, None, pacs.name, repo_name, state="dry-run")
    result.index_copy = {"method": node.index_copy_method, "kind": node.index_kind}
    result.manifest = {"storage": str(pacs.storage_dir), "excludes": pacs.storage_excludes(),
                       "host": restic_host(ctx.site, pacs.name)}
    return result
