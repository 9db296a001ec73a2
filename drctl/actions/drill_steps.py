"""The steps of a drill, in order: plan, check, restore, start, verify, timing. Each step
adds findings to the drill's state; a step that cannot go on (restore failed, node not
answering) ends the chain, and what was not verified stays unproven.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drctl.actions.check import run_check
from drctl.actions.context import Context
from drctl.actions.drill_restore import describe, restore
from drctl.drill import checks
from drctl.drill.findings import (
    REPOSITORY_DAMAGED,
    STANDBY_UNREACHABLE,
    VERIFICATION_INCOMPLETE,
    Finding,
    failing_studies,
)
from drctl.drill.phases import PhaseClock, projected_rto, rpo, target_findings
from drctl.drill.plan import DrillPlan, choose_scope, make_plan
from drctl.drill.served import served_layer
from drctl.errors import DicomError, DrctlError, Interrupted, UsageError
from drctl.pacs.base import pacs_node
from drctl.verify.manifest_store import instances_at, studies_at

log = logging.getLogger(__name__)

STUDY_BATCH = 500


@dataclass
class DrillState:
    """Everything a drill learns on its way (the report is made from it)."""

    ctx: Context
    run: Any
    drill_id: int
    primary: str
    target: str  # "sandbox" or a standby's name
    repository: str
    restic: Any
    snapshot: Any  # catalog Snapshot row
    copy: Any  # catalog IndexCopy row, or None
    options: Any  # DrillOptions
    seed: int
    clock: PhaseClock = field(default_factory=PhaseClock)
    findings: list[Finding] = field(default_factory=list)
    layers: dict[str, checks.LayerResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    studies: list = field(default_factory=list)
    plan: DrillPlan | None = None
    node: Any = None  # the RestoredNode
    restored_bytes: int = 0
    restore_s: float = 0.0
    verified_after: float | None = None  # seconds from the drill's start
    rto_s: float | None = None
    rto_measured_s: float | None = None
    rto_projected: bool = False
    rpo_s: float | None = None
    rpo_basis: str | None = None
    versions: dict = field(default_factory=dict)
    target_info: dict = field(default_factory=dict)

    @property
    def target_label(self) -> str:
        """What the drill restored onto, for messages: "the sandbox" or "standby NAME"."""
        return "the sandbox" if self.target == "sandbox" else f"standby {self.target}"

    def progress(self, phase: str, done: int | None = None, total: int | None = None) -> None:
        if self.options.on_progress is not None:
            self.options.on_progress(phase, done, total)

    def instances_of(self, study_uids: Sequence[str]) -> list:
        with self.ctx.catalog.session() as s:
            return instances_at(s, self.ctx.site, self.primary, self.snapshot.seq, study_uids)

    def iter_instances(self, study_uids: Sequence[str]) -> Iterator:
        """Manifest instances of ``study_uids``, read a batch of studies at a time."""
        uids = sorted(study_uids)
        for i in range(0, len(uids), STUDY_BATCH):
            yield from self.instances_of(uids[i : i + STUDY_BATCH])

    @property
    def studies_verified(self) -> int:
        index = self.layers.get("index")
        if index is None or self.verified_after is None:
            return 0
        bad = failing_studies(self.findings)
        return sum(
            1 for s in self.studies if s.study_uid in index.proven and s.study_uid not in bad
        )

    @property
    def restored_studies(self) -> list[str]:
        if self.plan is None:
            return []
        if self.plan.scope == "full":
            return [s.study_uid for s in self.studies]
        return list(self.plan.sampled_studies)


def validate_target(ctx: Context, primary: str, target: str, scope: str | None = None) -> None:
    """Refuse, before anything starts, a drill the configuration cannot do (UsageError).
    A standby is always restored in full: a partial restore would leave it unable to
    serve the studies that were not sampled."""
    source = ctx.settings.node[primary]
    if target == "sandbox":
        if source.index_kind == "postgresql" and not ctx.settings.drill.sandbox_postgres:
            raise UsageError(
                f"node {primary} has a PostgreSQL index: a sandbox drill needs "
                "drill.sandbox_postgres",
                hint="or drill on a standby (--standby)",
            )
        return
    standby = ctx.settings.node[target]
    if standby.kind != source.kind or standby.index_kind != source.index_kind:
        raise UsageError(
            f"standby {target} ({standby.kind}, {standby.index_kind} index) cannot "
            f"take snapshots of {primary} ({source.kind}, {source.index_kind} index)"
        )
    if not (standby.start and standby.stop):
        raise UsageError(f"node.{target}: a standby drill needs its start and stop commands")
    if (scope or ctx.settings.drill.scope) == "partial":
        raise UsageError(
            f"a partial drill on standby {target} would leave it serving only the sampled "
            "studies; standbys are restored in full",
            hint='drop --partial (or drill.scope = "partial"), or drill partially in a sandbox',
        )


def execute(state: DrillState) -> None:
    """Run the steps; findings and measurements go into ``state``."""
    with state.ctx.catalog.session() as s:
        state.studies = studies_at(s, state.ctx.site, state.primary, state.snapshot.seq)
    check(state)
    plan(state)
    try:
        if restore(state) and _hook(state) and start(state):
            verify(state)
    finally:
        if state.node is not None:
            state.progress("cleanup")
            state.node.close()
    state.progress("record")
    timing(state)


def check(state: DrillState) -> None:
    """``restic check`` with the rotating read subset, queued behind other operations."""
    state.progress("check")
    with state.clock.phase("check") as detail:
        result = run_check(state.ctx, state.repository)
        detail.update(
            {
                "subset": result.subset,
                "check_run_id": result.run_id,
                "waited_s": round(result.waited_s, 3),
            }
        )
        if not result.ok:
            state.clock.fail("check")
            state.findings.append(
                Finding(
                    REPOSITORY_DAMAGED,
                    None,
                    f"restic check (read subset {result.subset}) found damage: {result.error}",
                    "check",
                )
            )


def plan(state: DrillState) -> None:
    settings = state.ctx.settings.drill
    options = state.options
    if state.target == "sandbox":
        scope, why = choose_scope(
            options.scope,
            settings.scope,
            state.snapshot.total_bytes or 0,
            settings.full_max_bytes,
        )
    else:
        scope, why = "full", f"standby {state.target}: a standby is always restored in full"
    verify_all = settings.verify_all if options.verify_all is None else options.verify_all
    state.plan = make_plan(
        state.studies,
        state.instances_of,
        scope=scope,
        scope_reason=why,
        sample_studies=_pick(options.sample_studies, settings.sample_studies),
        sample_instances=_pick(options.sample_instances, settings.sample_instances),
        verify_all=verify_all,
        seed=state.seed,
    )
    if not state.studies:
        state.notes.append("the snapshot's manifest holds no study")


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _hook(state: DrillState) -> bool:
    if state.options.before_start is not None:
        state.options.before_start(state.node, state.plan)
    return True


def start(state: DrillState) -> bool:
    """Start the restored node and wait for C-ECHO (``timeouts.node_start``). False (and a
    ``standby_unreachable`` finding) when it never answers."""
    state.progress("start")
    with state.clock.phase("start") as detail:
        try:
            detail["seconds_to_echo"] = round(state.node.start(), 3)
        except (Interrupted, KeyboardInterrupt):
            raise
        except DrctlError as exc:
            state.clock.fail("start")
            detail["error"] = describe(exc)
            what = state.target_label
            state.findings.append(
                Finding(
                    STANDBY_UNREACHABLE,
                    None,
                    f"{what} did not come up on the restored data: {describe(exc)}",
                    "start",
                )
            )
            return False
        finally:
            state.target_info = state.node.describe()
        state.versions["pacs"] = state.node.version()
    return True


def verify(state: DrillState) -> None:
    """The layers: index, extra studies and instances on ONE C-FIND association; files;
    served (C-GET)."""
    plan_ = state.plan
    assert plan_ is not None and state.node is not None
    state.progress("verify")
    with state.clock.phase("verify") as detail:
        client, peer = state.node.dicom_client(), state.node.peer()
        sampled = {uid: [] for uid in plan_.sampled_studies}
        for instance in state.instances_of(plan_.sampled_studies):
            sampled[instance.study_uid].append(instance)
        try:
            with client.open(peer) as session:
                _keep(state, checks.index_layer(session, state.studies))
                _keep(state, checks.extra_layer(session, {s.study_uid for s in state.studies}))
                _keep(state, checks.instance_layer(session, sampled))
        except DicomError as exc:
            state.findings.append(
                Finding(
                    VERIFICATION_INCOMPLETE,
                    None,
                    f"no C-FIND association with the restored node: {exc}",
                    "index",
                )
            )
        find_associations = client.associations_opened
        restored = state.restored_studies
        _keep(
            state,
            checks.file_layer(
                state.node.storage_dir,
                state.iter_instances(restored),
                hash_all=plan_.verify_all,
                hash_keys=plan_.served_keys,
            ),
        )
        served = list(state.iter_instances(restored)) if plan_.verify_all else list(plan_.served)
        _keep(state, served_layer(client, peer, served))
        detail["associations"] = {
            "find": find_associations,
            "get": client.associations_opened - find_associations,
        }
        detail["layers"] = {
            name: round(layer.duration_s, 3) for name, layer in state.layers.items()
        }
        _still_answering(state)
    state.verified_after = state.clock.elapsed()


def _still_answering(state: DrillState) -> None:
    """When a check could not complete, ask whether the node still answers C-ECHO: a
    node that stopped answering during the drill is ``standby_unreachable``."""
    if not any(f.kind == VERIFICATION_INCOMPLETE for f in state.findings):
        return
    try:
        state.node.dicom_client().echo(state.node.peer())
    except DrctlError as exc:
        what = state.target_label
        state.clock.fail("verify")
        state.findings.append(
            Finding(
                STANDBY_UNREACHABLE,
                None,
                f"{what} stopped answering during verification: {describe(exc)}",
                "verify",
            )
        )


def _keep(state: DrillState, layer: checks.LayerResult) -> None:
    state.layers[layer.layer] = layer
    state.findings.extend(layer.findings)


def timing(state: DrillState) -> None:
    """RTO (projected for partial drills), RPO, and their target findings."""
    settings = state.ctx.settings.drill
    plan_ = state.plan
    if state.verified_after is not None and plan_ is not None:
        state.rto_measured_s = state.rto_s = state.verified_after
        if plan_.scope == "partial":
            projected = projected_rto(
                state.verified_after,
                state.restore_s,
                state.restored_bytes,
                state.snapshot.total_bytes or 0,
            )
            if projected is not None:
                state.rto_s, state.rto_projected = projected, True
    newest = None
    try:
        newest = pacs_node(state.ctx.settings, state.primary).newest_change_time()
        if newest is None:
            state.notes.append("the primary reports no change yet")
    except DrctlError as exc:
        state.notes.append(f"RPO measured against now: the primary did not answer ({exc})")
    pair = state.snapshot.pair_time or state.snapshot.time
    state.rpo_s, state.rpo_basis = rpo(pair, newest, datetime.now(UTC))
    state.findings += target_findings(
        rto_s=state.rto_s,
        rto_projected=state.rto_projected,
        max_rto=settings.max_rto,
        rpo_s=state.rpo_s,
        rpo_basis=state.rpo_basis,
        max_rpo=settings.max_rpo,
    )
