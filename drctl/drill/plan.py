"""What a drill restores and what it samples.

Scope: ``full`` restores every file; ``partial`` (archives too large to restore weekly)
restores the index and the files of the sampled studies only. ``auto`` picks full up to
``drill.full_max_bytes`` of stored data, partial above.

Samples are drawn with a recorded seed, so a drill can be replayed:

- ``sampled_studies`` (``--sample N``): instance-level C-FIND, and in a partial drill the
  studies whose files are restored;
- ``served``: the instances fetched by C-GET (``--sample-instances N``): one of every
  sampled study first, so each of them is proven to be served, then random instances of
  other restored studies; their stored files are also hashed against the recorded MD5.

With ``verify_all`` every restored file is hashed and every restored instance fetched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class StudyLike(Protocol):
    """A study of the manifest (drctl.verify.manifest.StudyEntry)."""

    study_uid: str
    series: int
    instances: int
    bytes: int


class InstanceLike(Protocol):
    """An instance of the manifest (drctl.verify.manifest.InstanceEntry)."""

    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class: str | None
    transfer_syntax: str | None
    path: str
    size: int
    md5: str | None
    digest: str | None


InstancesOf = Callable[[Sequence[str]], list[InstanceLike]]


@dataclass(frozen=True)
class DrillPlan:
    """The scope, the samples and the seed they were drawn with."""

    scope: str  # full | partial
    scope_reason: str
    seed: int
    sampled_studies: tuple[str, ...]
    served: tuple[InstanceLike, ...]
    verify_all: bool

    @property
    def served_keys(self) -> frozenset[tuple[str, str]]:
        return frozenset((i.sop_uid, i.path) for i in self.served)

    def restored(self, study_uid: str) -> bool:
        """True when the study's files are restored (all of them in a full drill)."""
        return self.scope == "full" or study_uid in set(self.sampled_studies)

    def to_json(self) -> dict:
        return {
            "scope": self.scope,
            "scope_reason": self.scope_reason,
            "seed": self.seed,
            "sampled_studies": len(self.sampled_studies),
            "served_instances": len(self.served),
            "verify_all": self.verify_all,
        }


def choose_scope(
    requested: str | None, configured: str, archive_bytes: int, full_max_bytes: int
) -> tuple[str, str]:
    """(scope, why): ``requested`` (--full/--partial) wins, then ``drill.scope``; ``auto``
    compares the snapshot's stored bytes with ``drill.full_max_bytes``."""
    if requested in ("full", "partial"):
        return requested, f"--{requested} given"
    if configured in ("full", "partial"):
        return configured, f"drill.scope = {configured}"
    if archive_bytes <= full_max_bytes:
        return "full", (
            f"auto: {archive_bytes} stored bytes <= drill.full_max_bytes ({full_max_bytes})"
        )
    return "partial", (
        f"auto: {archive_bytes} stored bytes > drill.full_max_bytes ({full_max_bytes})"
    )


def make_plan(
    studies: Sequence[StudyLike],
    instances_of: InstancesOf,
    *,
    scope: str,
    scope_reason: str,
    sample_studies: int,
    sample_instances: int,
    verify_all: bool,
    seed: int,
) -> DrillPlan:
    """Draw the samples for a drill of ``studies`` (the manifest). ``instances_of(uids)``
    returns the manifest instances of some studies; only sampled studies are read."""
    rng = random.Random(seed)
    uids = sorted(s.study_uid for s in studies if s.instances > 0)
    # at least one study: a drill never passes on counts alone, something must be served
    sampled = sorted(rng.sample(uids, min(max(1, sample_studies), len(uids))))
    if verify_all:
        return DrillPlan(scope, scope_reason, seed, tuple(sampled), (), True)
    sampled_set = set(sampled)
    others = [u for u in uids if u not in sampled_set] if scope == "full" else []
    extra = rng.sample(others, min(max(0, sample_instances - len(sampled)), len(others)))
    by_study: dict[str, list[InstanceLike]] = {}
    for instance in instances_of(sorted(sampled_set | set(extra))):
        by_study.setdefault(instance.study_uid, []).append(instance)
    for items in by_study.values():
        items.sort(key=lambda i: (i.series_uid, i.sop_uid, i.path))
    served = _draw(rng, by_study, sampled, sorted(extra), sample_instances)
    return DrillPlan(scope, scope_reason, seed, tuple(sampled), tuple(served), False)


def _draw(
    rng: random.Random,
    by_study: dict[str, list[InstanceLike]],
    sampled: list[str],
    extra: list[str],
    count: int,
) -> list[InstanceLike]:
    """One instance of each sampled study (even beyond ``count``), then one of each extra
    study, then more instances of the sampled studies, up to ``count``."""
    chosen: list[InstanceLike] = []
    seen: set[tuple[str, str]] = set()

    def take(instance: InstanceLike) -> None:
        key = (instance.sop_uid, instance.path)
        if key not in seen:
            seen.add(key)
            chosen.append(instance)

    for uid in sampled:  # every sampled study is proven served, whatever ``count``
        if by_study.get(uid):
            take(rng.choice(by_study[uid]))
    for uid in extra:
        if len(chosen) >= count:
            break
        if by_study.get(uid):
            take(rng.choice(by_study[uid]))
    pool = [i for uid in sampled for i in by_study.get(uid, []) if (i.sop_uid, i.path) not in seen]
    for instance in rng.sample(pool, min(len(pool), max(0, count - len(chosen)))):
        take(instance)
    return chosen
