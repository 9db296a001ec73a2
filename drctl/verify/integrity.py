"""Source integrity at backup time.

Every file that enters a snapshot for the first time is read once: its size and MD5 are
compared with what the index recorded when the PACS received it, and its canonical content
digest is computed for the drill (a digest that survives transfer-syntax-neutral
re-encoding over C-GET). A file that differs is a finding named by its study, so a
corrupt image does not silently enter every snapshot while retention prunes the good ones.

Files restic reports as *modified* are suspicious by themselves: Orthanc never rewrites a
stored file. Each is checked against its recorded MD5; many at once trips the circuit
breaker (ransomware encrypting the archive looks exactly like this).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from drctl.dicom.digest import file_digest
from drctl.verify.manifest import InstanceEntry


@dataclass(frozen=True)
class SourceFinding:
    kind: str  # source_corrupt | source_modified | file_missing | not_dicom
    study_uid: str
    detail: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "study_uid": self.study_uid, "detail": self.detail}


@dataclass
class IntegrityStats:
    files_read: int = 0
    bytes_read: int = 0
    digests: int = 0


@dataclass
class NewInstances:
    entries: list[InstanceEntry] = field(default_factory=list)
    findings: list[SourceFinding] = field(default_factory=list)
    stats: IntegrityStats = field(default_factory=IntegrityStats)


Reader = Callable[[str], bytes]  # storage-relative path -> stored bytes
Decoder = Callable[[bytes, bool], bytes]  # (stored bytes, compressed) -> DICOM bytes


def examine_new(rows: Iterable, read: Reader, decode: Decoder, *,
                on_progress: Callable[[int], None] | None = None) -> NewInstances:
    """Read each new instance's stored file once: check size and MD5 against the index,
    compute the canonical digest of the DICOM content."""
    out = NewInstances()
    for n, row in enumerate(rows, 1):
        entry, finding = _examine(row, read, decode, out.stats)
        out.entries.append(entry)
        if finding is not None:
            out.findings.append(finding)
        if on_progress is not None and n % 200 == 0:
            on_progress(n)
    return out


def _examine(row, read: Reader, decode: Decoder, stats: IntegrityStats):
    digest, finding = None, None
    md5 = row.stored_md5
    path = row.storage_path or ""
    try:
        stored = read(path)
    except (FileNotFoundError, IsADirectoryError):
        finding = SourceFinding("file_missing", row.study_uid,
                                f"instance {row.sop_uid}: stored file {path} is missing "
                                "(deleted after the index copy, or lost)")
        stored = None
    if stored is not None:
        stats.files_read += 1
        stats.bytes_read += len(stored)
        actual_md5 = hashlib.md5(stored, usedforsecurity=False).hexdigest()
        if row.compressed_size is not None and len(stored) != row.compressed_size:
            finding = SourceFinding("source_corrupt", row.study_uid,
                                    f"instance {row.sop_uid}: file {path} has {len(stored)} "
                                    f"bytes, the index recorded {row.compressed_size}")
        elif md5 and actual_md5 != md5:
            finding = SourceFinding("source_corrupt", row.study_uid,
                                    f"instance {row.sop_uid}: file {path} differs from the MD5 "
                                    "the index recorded when it was received")
        else:
            digest, finding = _digest(row, stored, decode)
            if digest:
                stats.digests += 1
        md5 = actual_md5 if finding is None else md5
    entry = InstanceEntry(row.sop_uid, row.series_uid, row.study_uid, row.sop_class_uid,
                          row.transfer_syntax_uid, path, int(row.compressed_size or 0), md5,
                          digest, bool(row.compressed), row.internal_id)
    return entry, finding


def _digest(row, stored: bytes, decode: Decoder) -> tuple[str | None, SourceFinding | None]:
    try:
        return file_digest(decode(stored, bool(row.compressed))).digest, None
    except Exception as exc:  # any parse failure: the file is not readable DICOM
        return None, SourceFinding("not_dicom", row.study_uid,
                                   f"instance {row.sop_uid}: stored file {row.storage_path} "
                                   f"is not readable DICOM ({type(exc).__name__})")


def check_modified(entries: Iterable[InstanceEntry], read: Reader,
                   stats: IntegrityStats) -> list[SourceFinding]:
    """Stored files restic saw change: compare each with its recorded MD5."""
    findings = []
    for entry in entries:
        try:
            data = read(entry.path)
        except FileNotFoundError:
            findings.append(SourceFinding("file_missing", entry.study_uid,
                                          f"instance {entry.sop_uid}: {entry.path} disappeared"))
            continue
        stats.files_read += 1
        stats.bytes_read += len(data)
        if entry.md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != entry.md5:
            findings.append(SourceFinding(
                "source_modified", entry.study_uid,
                f"instance {entry.sop_uid}: stored file {entry.path} was rewritten after it "
                "was received (Orthanc never rewrites a file: bit rot, tampering or ransomware)"))
    return findings
