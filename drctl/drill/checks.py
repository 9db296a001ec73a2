"""The checks of a drill, one function per layer, each returning its findings.

- index: one study-level C-FIND per batch of manifest UIDs (UID lists, all on the
  caller's one association; a truncated answer is split and asked again, never taken as
  complete): every study present, series and instance counts equal;
- extra studies: studies on the node that the manifest lacks (informational);
- instances: instance-level C-FIND of the sampled studies, every SOP Instance UID present;
- files: every restored file of the manifest exists with its recorded size (a stat), and
  the sampled ones (all with ``verify_all``) hash to the recorded MD5;
- served (:mod:`drctl.drill.served`): C-GET of the sampled instances in their stored
  (SOP class, transfer syntax) pairs, content digests compared with the manifest.

A C-FIND pass proves the index only (Orthanc answers it from its database); the file and
served layers prove the images.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drctl.dicom.errors import DicomTruncated
from drctl.drill.findings import (
    COUNT_MISMATCH,
    EXTRA_STUDY,
    INSTANCE_CORRUPT,
    INSTANCE_MISSING,
    STUDY_MISSING,
    VERIFICATION_INCOMPLETE,
    Finding,
    InstanceProblem,
    per_study,
)
from drctl.drill.plan import InstanceLike, StudyLike
from drctl.errors import DrctlError

EXTRA_STUDIES_NAMED = 20
DATED_STUDIES = "19000101-"  # a range the node splits when it truncates


@dataclass
class LayerResult:
    """What one layer checked, proved and found."""

    layer: str
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    proven: set[str] = field(default_factory=set)  # study UIDs this layer proved
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "checked": self.checked,
            "studies_proven": len(self.proven),
            "findings": len(self.findings),
            "duration_s": round(self.duration_s, 3),
            "notes": self.notes,
            **self.extra,
        }


def timed(result_fn):
    """Decorator: fill ``duration_s`` of the LayerResult a check returns."""

    def wrapper(*args: Any, **kwargs: Any) -> LayerResult:
        started = time.monotonic()
        result = result_fn(*args, **kwargs)
        result.duration_s = time.monotonic() - started
        return result

    wrapper.__name__ = result_fn.__name__
    wrapper.__doc__ = result_fn.__doc__
    return wrapper


@timed
def index_layer(session: Any, studies: Sequence[StudyLike]) -> LayerResult:
    """Study-level C-FIND of every manifest study by UID lists on ``session`` (one
    association). Returns study_missing / count_mismatch findings, or one
    verification_incomplete finding when the C-FIND could not complete."""
    result = LayerResult("index", checked=len(studies))
    try:
        found = session.find_studies_by_uid([s.study_uid for s in studies])
    except DrctlError as exc:
        result.findings.append(
            Finding(
                VERIFICATION_INCOMPLETE,
                None,
                f"study-level C-FIND did not complete ({exc}); no study is proven present",
                "index",
            )
        )
        return result
    for study in studies:
        record = found.get(study.study_uid)
        if record is None:
            result.findings.append(
                Finding(
                    STUDY_MISSING,
                    study.study_uid,
                    "not returned by the restored node's study-level C-FIND (UID-list query)",
                    "index",
                )
            )
            continue
        problems = []
        if record.series_count != study.series:
            problems.append(
                f"{_count(record.series_count)} series on the node, {study.series} in the manifest"
            )
        if record.instance_count != study.instances:
            problems.append(
                f"{_count(record.instance_count)} instances on the node, "
                f"{study.instances} in the manifest"
            )
        if problems:
            result.findings.append(
                Finding(COUNT_MISMATCH, study.study_uid, "; ".join(problems), "index")
            )
        else:
            result.proven.add(study.study_uid)
    return result


def _count(value: int | None) -> str:
    return "no count of" if value is None else str(value)


@timed
def extra_layer(session: Any, expected: set[str]) -> LayerResult:
    """Studies the node lists that the manifest lacks (``extra_study``, informational).
    A node that truncates the wildcard query is listed by date ranges instead; studies
    without a date then cannot be listed, which a note says."""
    result = LayerResult("extra")
    try:
        try:
            records = session.find_studies()
        except DicomTruncated:
            result.notes.append(
                "the node truncates a C-FIND of all studies: listed by "
                "StudyDate ranges, studies without a StudyDate not covered"
            )
            records = session.find_studies(DATED_STUDIES)
    except DrctlError as exc:
        result.notes.append(f"extra studies not listed: {exc}")
        return result
    result.checked = len(records)
    extras = sorted({r.study_uid for r in records} - expected)
    for uid in extras[:EXTRA_STUDIES_NAMED]:
        result.findings.append(
            Finding(
                EXTRA_STUDY,
                uid,
                "on the restored node but not in the snapshot's manifest (informational)",
                "index",
            )
        )
    if len(extras) > EXTRA_STUDIES_NAMED:
        result.findings.append(
            Finding(
                EXTRA_STUDY,
                None,
                f"and {len(extras) - EXTRA_STUDIES_NAMED} more studies not in the manifest",
                "index",
            )
        )
    return result


@timed
def instance_layer(session: Any, instances_by_study: dict[str, list[InstanceLike]]) -> LayerResult:
    """Instance-level C-FIND of each sampled study; every manifest SOP Instance UID must
    be listed (``instance_missing``). A study the node cannot list completely is
    ``verification_incomplete``."""
    result = LayerResult("instances", checked=len(instances_by_study))
    problems: list[InstanceProblem] = []
    for study_uid in sorted(instances_by_study):
        expected = {i.sop_uid for i in instances_by_study[study_uid]}
        try:
            listed = {r.sop_instance_uid for r in session.find_instances(study_uid)}
        except DrctlError as exc:
            result.findings.append(
                Finding(
                    VERIFICATION_INCOMPLETE,
                    study_uid,
                    f"instance-level C-FIND did not complete: {exc}",
                    "instances",
                )
            )
            if not session.is_open:
                break
            continue
        missing = sorted(expected - listed)
        problems += [
            InstanceProblem(study_uid, uid, "not listed by instance-level C-FIND")
            for uid in missing
        ]
        if not missing:
            result.proven.add(study_uid)
    checked = {uid: len(items) for uid, items in instances_by_study.items()}
    result.findings += per_study(INSTANCE_MISSING, problems, layer="instances", checked=checked)
    return result


@timed
def file_layer(
    storage_dir: Path,
    instances: Iterable[InstanceLike],
    *,
    hash_all: bool,
    hash_keys: frozenset[tuple[str, str]],
) -> LayerResult:
    """Stat every stored file of ``instances`` under ``storage_dir`` (exists, recorded
    size) and hash the sampled ones (all with ``hash_all``) against the recorded MD5:
    ``instance_missing`` / ``instance_corrupt`` per study."""
    result = LayerResult("files")
    problems: dict[str, list[InstanceProblem]] = {INSTANCE_MISSING: [], INSTANCE_CORRUPT: []}
    checked: dict[str, int] = defaultdict(int)
    hashed = hashed_bytes = 0
    for instance in instances:
        result.checked += 1
        checked[instance.study_uid] += 1
        hash_it = hash_all or (instance.sop_uid, instance.path) in hash_keys
        kind, what, size = _check_file(storage_dir / instance.path, instance, hash_it)
        if size is not None and hash_it and instance.md5:
            hashed, hashed_bytes = hashed + 1, hashed_bytes + size
        if kind:
            problems[kind].append(InstanceProblem(instance.study_uid, instance.sop_uid, what))
    bad = {p.study_uid for found in problems.values() for p in found}
    result.proven = {uid for uid in checked if uid not in bad}
    for kind, found in problems.items():
        result.findings += per_study(kind, found, layer="files", checked=checked)
    result.extra = {"hashed": hashed, "bytes_hashed": hashed_bytes}
    return result


def _check_file(path: Path, instance: InstanceLike, hash_it: bool) -> tuple[str, str, int | None]:
    """(finding kind or "", what is wrong, size when the size was right) of one file."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return INSTANCE_MISSING, "stored file missing", None
    except OSError as exc:
        return INSTANCE_MISSING, f"stored file unreadable: {exc.strerror}", None
    if size != instance.size:
        return INSTANCE_CORRUPT, f"stored file has {size} bytes, {instance.size} recorded", None
    if not (hash_it and instance.md5):
        return "", "", size
    try:
        digest = _md5(path)
    except OSError as exc:
        return INSTANCE_MISSING, f"stored file unreadable: {exc.strerror}", size
    if digest != instance.md5:
        return INSTANCE_CORRUPT, "stored file's MD5 differs from the recorded one", size
    return "", "", size


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
