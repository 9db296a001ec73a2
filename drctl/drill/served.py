"""The served layer of a drill: C-GET of sampled instances from the restored node, each
proposed in its stored (SOP class, transfer syntax) pair so the node sends it as stored,
and the content digest of what arrives compared with the manifest's. This is what proves
the images, not only the index: ``instance_corrupt`` for different content,
``instance_missing`` for an instance that does not arrive, ``verification_incomplete``
for instances left unproven when the association failed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drctl.dicom.client import MAX_STORAGE_PAIRS_PER_GET
from drctl.dicom.digest import content_digest
from drctl.dicom.errors import DicomRetrieveFailed
from drctl.dicom.status import describe
from drctl.drill.checks import LayerResult, timed
from drctl.drill.findings import (
    INSTANCE_CORRUPT,
    INSTANCE_MISSING,
    VERIFICATION_INCOMPLETE,
    Finding,
    InstanceProblem,
    per_study,
)
from drctl.drill.plan import InstanceLike
from drctl.errors import DicomError, DrctlError


@dataclass
class _Served:
    """What C-GET brought back, per SOP Instance UID."""

    expected: dict[str, InstanceLike]
    done: set[str] = field(default_factory=set)  # accounted for, one way or another
    received: set[str] = field(default_factory=set)
    corrupt: list[InstanceProblem] = field(default_factory=list)
    missing: list[InstanceProblem] = field(default_factory=list)
    incomplete: list[Finding] = field(default_factory=list)
    unrecorded: int = 0

    def on_instance(self, sop_uid: str, _sop_class: str, syntax: str, data: bytes) -> None:
        instance = self.expected.get(sop_uid)
        if instance is None or sop_uid in self.done:
            return
        self.done.add(sop_uid)
        self.received.add(sop_uid)
        try:
            digest = content_digest(data, syntax)
        except (DrctlError, ValueError) as exc:
            self.corrupt.append(
                InstanceProblem(
                    instance.study_uid, sop_uid, f"served dataset cannot be parsed: {exc}"
                )
            )
            return
        if instance.digest is None:
            self.unrecorded += 1
        elif digest != instance.digest:
            self.corrupt.append(
                InstanceProblem(
                    instance.study_uid, sop_uid, "served content differs from the manifest's digest"
                )
            )


@timed
def served_layer(client: Any, peer: Any, instances: Sequence[InstanceLike]) -> LayerResult:
    """C-GET ``instances`` from ``peer`` in their stored (SOP class, transfer syntax)
    pairs and compare content digests with the manifest: ``instance_corrupt`` for a
    different digest, ``instance_missing`` for an instance that did not arrive."""
    result = LayerResult("served", checked=len(instances))
    served = _Served({i.sop_uid: i for i in instances})
    no_pair = [i for i in instances if not (i.sop_class and i.transfer_syntax)]
    for instance in no_pair:
        served.incomplete.append(
            Finding(
                VERIFICATION_INCOMPLETE,
                instance.study_uid,
                f"{instance.sop_uid}: no stored SOP class or transfer "
                "syntax recorded; cannot be fetched as stored",
                "served",
            )
        )
    wanted = [i for i in instances if i.sop_class and i.transfer_syntax]
    pairs = list(dict.fromkeys((i.sop_class, i.transfer_syntax) for i in wanted))
    for start in range(0, len(pairs), MAX_STORAGE_PAIRS_PER_GET):
        chosen = set(pairs[start : start + MAX_STORAGE_PAIRS_PER_GET])
        group = [i for i in wanted if (i.sop_class, i.transfer_syntax) in chosen]
        _fetch(client, peer, sorted(chosen), group, served)
    checked = defaultdict(int)
    for instance in instances:
        checked[instance.study_uid] += 1
    result.findings = (
        per_study(INSTANCE_MISSING, served.missing, layer="served", checked=checked)
        + per_study(INSTANCE_CORRUPT, served.corrupt, layer="served", checked=checked)
        + served.incomplete
    )
    bad = {f.study_uid for f in result.findings}
    result.proven = {uid for uid in checked if uid not in bad}
    result.extra = {"received": len(served.received), "without_recorded_digest": served.unrecorded}
    return result


def _fetch(client: Any, peer: Any, pairs: list, group: list[InstanceLike], served: _Served) -> None:
    """C-GET ``group`` on one association proposing ``pairs``, series by series."""
    by_series: dict[tuple[str, str], list[InstanceLike]] = defaultdict(list)
    for instance in group:
        by_series[(instance.study_uid, instance.series_uid)].append(instance)
    try:
        with client.open(peer, find=False, storage_contexts=pairs) as session:
            for (study_uid, series_uid), items in by_series.items():
                refused = [
                    i
                    for i in items
                    if (i.sop_class, i.transfer_syntax) not in session.storage_pairs
                ]
                for i in refused:
                    served.missing.append(
                        InstanceProblem(
                            study_uid,
                            i.sop_uid,
                            "the node refused to send it in its stored transfer syntax",
                        )
                    )
                    served.done.add(i.sop_uid)
                items = [i for i in items if i not in refused]
                if items:
                    _get_series(session, study_uid, series_uid, items, served)
    except DicomError as exc:
        _unproven(group, served, f"C-GET did not complete: {exc}")


def _get_series(
    session: Any, study_uid: str, series_uid: str, items: list[InstanceLike], served: _Served
) -> None:
    uids = [i.sop_uid for i in items]
    what = "not received by C-GET"
    try:
        session.get_instances(study_uid, series_uid, uids, served.on_instance)
    except DicomRetrieveFailed as exc:
        what = f"not received: C-GET ended with {describe(exc.status or 0, 'C-GET')}"
    for uid in uids:
        if uid not in served.done:
            served.missing.append(InstanceProblem(study_uid, uid, what))
            served.done.add(uid)


def _unproven(group: list[InstanceLike], served: _Served, why: str) -> None:
    """Instances of ``group`` not yet accounted for when the association failed."""
    left: dict[str, int] = defaultdict(int)
    for instance in group:
        if instance.sop_uid not in served.done:
            left[instance.study_uid] += 1
            served.done.add(instance.sop_uid)
    for study_uid, count in sorted(left.items()):
        served.incomplete.append(
            Finding(
                VERIFICATION_INCOMPLETE,
                study_uid,
                f"{count} sampled instances unproven: {why}",
                "served",
            )
        )
