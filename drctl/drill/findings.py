"""What a drill found, and the verdict it implies.

The kinds are cli.md's, plus ``verification_incomplete``: a check that could not finish
(the node stopped answering, a C-FIND the peer kept truncating) leaves the studies it
covers unproven, and a drill that cannot prove a study is there must fail. Every kind
fails the drill except ``extra_study`` (a study on the restored node that the manifest
does not list: informational).

Problems with instances are reported once per study and kind, naming the first few SOP
Instance UIDs, so that mass damage stays readable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

STUDY_MISSING = "study_missing"
COUNT_MISMATCH = "count_mismatch"
INSTANCE_MISSING = "instance_missing"
INSTANCE_CORRUPT = "instance_corrupt"
EXTRA_STUDY = "extra_study"
STANDBY_UNREACHABLE = "standby_unreachable"
RESTORE_FAILED = "restore_failed"
REPOSITORY_DAMAGED = "repository_damaged"
RTO_EXCEEDED = "rto_exceeded"
RPO_EXCEEDED = "rpo_exceeded"
VERIFICATION_INCOMPLETE = "verification_incomplete"

KINDS = (
    STUDY_MISSING,
    COUNT_MISMATCH,
    INSTANCE_MISSING,
    INSTANCE_CORRUPT,
    EXTRA_STUDY,
    STANDBY_UNREACHABLE,
    RESTORE_FAILED,
    REPOSITORY_DAMAGED,
    RTO_EXCEEDED,
    RPO_EXCEEDED,
    VERIFICATION_INCOMPLETE,
)
INFORMATIONAL = frozenset({EXTRA_STUDY})
UIDS_NAMED = 5


@dataclass(frozen=True)
class Finding:
    """One finding of a drill. ``layer`` says which check found it (index, instances,
    files, served, or the drill phase: check, restore, start, targets)."""

    kind: str
    study_uid: str | None
    detail: str
    layer: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")

    @property
    def failing(self) -> bool:
        return self.kind not in INFORMATIONAL

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "study_uid": self.study_uid,
            "detail": self.detail,
            "layer": self.layer,
        }


@dataclass(frozen=True)
class InstanceProblem:
    """One instance that failed a check, before it is grouped by study."""

    study_uid: str
    sop_uid: str
    what: str


def per_study(
    kind: str,
    problems: Iterable[InstanceProblem],
    *,
    layer: str,
    checked: dict[str, int] | None = None,
) -> list[Finding]:
    """One finding of ``kind`` per study among ``problems``, naming up to
    :data:`UIDS_NAMED` instances. ``checked`` (study -> instances checked) adds "k of n"."""
    grouped: dict[str, list[InstanceProblem]] = defaultdict(list)
    for problem in problems:
        grouped[problem.study_uid].append(problem)
    findings = []
    for study_uid in sorted(grouped):
        items = grouped[study_uid]
        of = f" of {checked[study_uid]}" if checked and study_uid in checked else ""
        named = "; ".join(f"{p.sop_uid} ({p.what})" for p in items[:UIDS_NAMED])
        more = f"; and {len(items) - UIDS_NAMED} more" if len(items) > UIDS_NAMED else ""
        noun = "instance" if len(items) == 1 and not of else "instances"
        findings.append(Finding(kind, study_uid, f"{len(items)}{of} {noun}: {named}{more}", layer))
    return findings


def verdict(findings: Iterable[Finding]) -> str:
    """``passed`` when no finding fails the drill, else ``failed``."""
    return "failed" if any(f.failing for f in findings) else "passed"


def failing_studies(findings: Iterable[Finding]) -> set[str]:
    """Study UIDs named by a failing finding."""
    return {f.study_uid for f in findings if f.failing and f.study_uid}


def counts_by_kind(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for f in findings:
        counts[f.kind] += 1
    return dict(sorted(counts.items()))
