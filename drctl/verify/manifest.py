"""Study manifests: what each snapshot holds, built incrementally from the index copy.

A manifest is frozen at backup time from the PACS's own inventory (the index copy), not by
parsing the archive. The work is proportional to what changed:

1. :func:`load_previous` reads the node's current manifest from the catalog: its studies
   (UID -> counts) and the highest instance key it has seen.
2. :func:`read_delta` runs inside the index copy's point in time: all study summaries
   (one set-based query), the instances that arrived after the previous key, and the full
   instance lists of only those studies whose counts are not explained by the arrivals
   (a deletion or replacement happened there).
3. :func:`plan_changes` compares the two: studies added, changed, vanished; instances
   added and removed.

If the index's highest key went backwards (the index was rebuilt or replaced), the delta
falls back to a full read: correctness first, then speed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from drctl.verify.phi import patient_hash


@dataclass(frozen=True)
class StudyEntry:
    """A study of a manifest (no patient name, patient ID only as a keyed hash)."""

    study_uid: str
    series: int
    instances: int
    modalities: str
    study_date: str | None
    patient_hash: str | None
    pacs_id: str | None
    bytes: int = 0

    def same_content(self, other: StudyEntry) -> bool:
        return (self.series, self.instances, self.modalities, self.study_date,
                self.patient_hash) == (other.series, other.instances, other.modalities,
                                       other.study_date, other.patient_hash)


@dataclass(frozen=True)
class InstanceEntry:
    """An instance of a manifest and its stored file."""

    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class: str | None
    transfer_syntax: str | None
    path: str
    size: int
    md5: str | None
    digest: str | None
    compressed: bool
    internal_id: int | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.sop_uid, self.path)


@dataclass
class PreviousManifest:
    seq: int | None
    studies: dict[str, StudyEntry]
    max_internal_id: int

    @property
    def first(self) -> bool:
        return self.seq is None


@dataclass
class InventoryDelta:
    studies: dict[str, StudyEntry]
    new_instances: list  # InstanceRow-like, arrived after the previous key (all when full)
    recheck: dict[str, list]  # study UID -> all its InstanceRow-likes now
    max_internal_id: int
    change_seq: int | None
    full: bool
    rows_read: int = 0


@dataclass
class ManifestChanges:
    studies_added: list[StudyEntry] = field(default_factory=list)
    studies_changed: list[StudyEntry] = field(default_factory=list)
    studies_vanished: list[str] = field(default_factory=list)
    instances_added: list = field(default_factory=list)  # InstanceRow-likes to digest
    instances_removed: list[tuple[str, str]] = field(default_factory=list)  # (sop, path)


def study_entry(row, phi_key: bytes | None) -> StudyEntry:
    return StudyEntry(
        study_uid=row.study_uid,
        series=int(row.series_count),
        instances=int(row.instance_count),
        modalities="\\".join(sorted(m for m in row.modalities if m)),
        study_date=row.study_date or None,
        patient_hash=patient_hash(phi_key, row.patient_id),
        pacs_id=row.public_id,
    )


def read_delta(inventory, previous: PreviousManifest, phi_key: bytes | None) -> InventoryDelta:
    """Read what changed since ``previous`` from ``inventory`` (inside the index copy's
    snapshot). Materializes everything: the snapshot ends when the read returns."""
    summaries = inventory.study_summaries()
    studies = {s.study_uid: study_entry(s, phi_key) for s in summaries}
    current_max = inventory.max_internal_id()
    change_seq = inventory.last_change_seq()
    full = previous.first or current_max < previous.max_internal_id
    after = None if full else previous.max_internal_id
    new = list(inventory.instances(after_internal_id=after))
    recheck: dict[str, list] = {}
    arrived = Counter(r.study_uid for r in new)
    # Studies whose count the arrivals do not explain: something was deleted or replaced,
    # or (PostgreSQL) an instance committed late with a key below the previous maximum.
    to_check = []
    for s in summaries:
        before = previous.studies.get(s.study_uid)
        expected = arrived[s.study_uid] + (before.instances if before and not full else 0)
        if (before is not None and full) or s.instance_count != expected:
            to_check.append(s.public_id)
    if to_check:
        grouped = defaultdict(list)
        for row in inventory.instances(study_public_ids=to_check):
            grouped[row.study_uid].append(row)
        recheck = dict(grouped)
    rows = len(new) + sum(len(v) for v in recheck.values())
    return InventoryDelta(studies, new, recheck, max(current_max, 0), change_seq, full, rows)


def plan_changes(previous: PreviousManifest, delta: InventoryDelta,
                 open_instances: dict[str, list[InstanceEntry]]) -> ManifestChanges:
    """Compare the previous manifest with the delta. ``open_instances`` maps each study of
    ``delta.recheck`` (and each vanished study) to its instances in the previous manifest."""
    changes = ManifestChanges()
    for uid, entry in delta.studies.items():
        before = previous.studies.get(uid)
        if before is None:
            changes.studies_added.append(entry)
        elif not entry.same_content(before) or uid in delta.recheck:
            changes.studies_changed.append(entry)
    changes.studies_vanished = sorted(set(previous.studies) - set(delta.studies))

    for uid, rows in delta.recheck.items():
        before = {i.key for i in open_instances.get(uid, [])}
        now = {(r.sop_uid, r.storage_path) for r in rows}
        changes.instances_removed += sorted(before - now)
        changes.instances_added += [r for r in rows if (r.sop_uid, r.storage_path) not in before]
    changes.instances_added += [r for r in delta.new_instances if r.study_uid not in delta.recheck]
    for uid in changes.studies_vanished:
        changes.instances_removed += sorted(i.key for i in open_instances.get(uid, []))
    return changes


def current_studies(previous: PreviousManifest, delta: InventoryDelta, changes: ManifestChanges,
                    added: list[InstanceEntry], removed_bytes: dict[str, int]) -> dict[str, StudyEntry]:
    """Every study of the new manifest with its stored byte total: unchanged studies keep
    their previous entry, added and changed ones get the previous total plus the added
    instances minus the removed ones."""
    added_bytes: dict[str, int] = defaultdict(int)
    for entry in added:
        added_bytes[entry.study_uid] += entry.size
    out: dict[str, StudyEntry] = {}
    for uid, entry in delta.studies.items():
        before = previous.studies.get(uid)
        if before is not None and entry.same_content(before) and uid not in delta.recheck:
            out[uid] = before
            continue
        total = (before.bytes if before else 0) + added_bytes[uid] - removed_bytes.get(uid, 0)
        out[uid] = StudyEntry(entry.study_uid, entry.series, entry.instances, entry.modalities,
                              entry.study_date, entry.patient_hash, entry.pacs_id, max(total, 0))
    return out
