"""``drctl failover`` and ``drctl failback``: the steps of a site failover that can be
automated, with dry runs, each recorded.

Failover (the primary is down): refuse when the latest drill failed (unless forced), a
final replication (or the streaming replica promoted) — tolerated to fail, since the
primary is usually the thing that is down — then the newest snapshot restored onto the
standby and verified over DICOM (a full standby drill), and the failover state recorded.
Studies the replicated index knew but the snapshot lacks have no images anywhere: they
are listed, so the modalities can send them again.

Failback (the primary is back): studies stored on the standby while it served (found by
comparing its study set with the snapshot it started from) are sent to the primary and
verified there. Studies deleted on the standby meanwhile are listed for a person to
decide, never replayed.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from drctl.actions.context import Context
from drctl.actions.restore import verify_study_at
from drctl.catalog.models import Drill, Setting, Snapshot
from drctl.errors import DrctlError, UsageError
from drctl.pacs.base import pacs_node
from drctl.verify.manifest_store import studies_at

log = logging.getLogger(__name__)


def _key(site: str) -> str:
    return f"failover:{site}"


@dataclass
class Step:
    step: str
    state: str  # done | failed | skipped | planned
    detail: str = ""

    def to_json(self) -> dict:
        return {"step": self.step, "state": self.state, "detail": self.detail}


@dataclass
class SwitchResult:
    action: str  # failover | failback
    standby: str
    primary: str
    dry_run: bool
    run_id: int | None = None
    state: str = "planned"
    snapshot_id: str | None = None
    steps: list[Step] = field(default_factory=list)
    studies_sent: list[str] = field(default_factory=list)
    studies_to_decide: list[str] = field(default_factory=list)
    studies_without_images: list[str] = field(default_factory=list)
    drill: dict | None = None

    def to_json(self) -> dict:
        return {"action": self.action, "standby": self.standby, "primary": self.primary,
                "dry_run": self.dry_run, "run_id": self.run_id, "state": self.state,
                "snapshot_id": self.snapshot_id, "steps": [s.to_json() for s in self.steps],
                "studies_sent": self.studies_sent,
                "studies_deleted_on_standby": self.studies_to_decide,
                "studies_without_images": self.studies_without_images, "drill": self.drill}


def _primary_of(ctx: Context, standby: str) -> str:
    node = ctx.node(standby)
    if node.role != "standby":
        raise UsageError(f"node {standby} is not a standby (role = \"standby\")")
    if node.primary:
        return node.primary
    primaries = list(ctx.settings.primaries())
    if len(primaries) != 1:
        raise UsageError(f"node.{standby}.primary: name the primary this standby replaces")
    return primaries[0]


def _latest_drill(ctx: Context) -> Drill | None:
    with ctx.catalog.session() as s:
        return s.scalars(select(Drill).where(Drill.site == ctx.site, Drill.ended_at.is_not(None))
                         .order_by(Drill.ended_at.desc()).limit(1)).first()


def _live_studies(pacs) -> dict[str, int]:
    """Study UID -> instance count as the node answers C-FIND (wildcard, one association)."""
    with pacs.dicom_client().open(pacs.peer()) as session:
        return {r.study_uid: r.instance_count or 0 for r in session.find_studies()}


def run_failover(ctx: Context, standby: str, *, dry_run: bool = False,
                 force: bool = False) -> SwitchResult:
    """Fail over to ``standby``. A failed latest drill refuses (state ``refused``) unless
    ``force``; the result's state is ``succeeded`` only when the standby was verified."""
    primary = _primary_of(ctx, standby)
    result = SwitchResult("failover", standby, primary, dry_run)
    drill = _latest_drill(ctx)
    gate = f"latest drill {drill.id} {drill.verdict}" if drill else "no drill yet"
    if (drill is None or drill.verdict != "passed") and not force:
        result.state = "refused"
        result.steps.append(Step("drill gate", "failed", f"{gate}: pass a drill first, or "
                                 "--force if the risk is understood"))
        return result
    result.steps.append(Step("drill gate", "done", gate + (" (forced)" if force else "")))
    mode = ctx.node(standby).replication or "default"
    if dry_run:
        result.steps += [Step("final replication", "planned", f"mode {mode}"),
                         Step("restore newest snapshot onto the standby and verify", "planned"),
                         Step("record failover state", "planned")]
        return result
    with ctx.run("failover", node=standby, details={"primary": primary}) as run:
        result.run_id = run.id
        known = _final_replication(ctx, standby, result)
        _restore_and_verify(ctx, primary, standby, result)
        if known:
            result.studies_without_images = sorted(
                set(known) - set(_snapshot_studies(ctx, primary, result.snapshot_id)))
        if result.state == "succeeded":
            _save_state(ctx, {"standby": standby, "primary": primary,
                              "snapshot_id": result.snapshot_id, "run_id": run.id,
                              "at": datetime.now(UTC).isoformat()})
            result.steps.append(Step("record failover state", "done"))
        else:
            run.finish("failed", "the standby could not be verified on the newest snapshot")
        run.details.update(result.to_json())
    return result


def _final_replication(ctx: Context, standby: str, result: SwitchResult) -> dict[str, int]:
    """Replicate once more (or promote a streaming replica); the study set it gives the
    standby, to name studies that will lack images. Failure is tolerated and reported."""
    from drctl.actions.replicate import run_replicate

    try:
        replicated = run_replicate(ctx, standby, force=True)
        ok = replicated.state == "succeeded"
        result.steps.append(Step("final replication", "done" if ok else "failed",
                                 replicated.reason or replicated.state))
        return _live_studies(pacs_node(ctx.settings, standby)) if ok else {}
    except DrctlError as exc:
        result.steps.append(Step("final replication", "failed", f"{exc} (continuing: the "
                                 "primary may be the thing that is down)"))
        return {}


def _restore_and_verify(ctx: Context, primary: str, standby: str, result: SwitchResult) -> None:
    from drctl.actions.drill import DrillOptions, run_drill

    report = run_drill(ctx, DrillOptions(node=primary, standby=standby, scope="full"))
    result.snapshot_id = report.snapshot_id
    result.drill = {"drill_id": report.drill_id, "verdict": report.verdict,
                    "rto_s": report.rto_s, "findings": len(report.findings)}
    ok = report.verdict == "passed"
    result.steps.append(Step("restore newest snapshot onto the standby and verify",
                             "done" if ok else "failed",
                             f"snapshot {(report.snapshot_id or '-')[:8]}, drill "
                             f"{report.drill_id} {report.verdict}"))
    result.state = "succeeded" if ok else "failed"


def _snapshot_studies(ctx: Context, node: str, snapshot_id: str | None) -> list[str]:
    if not snapshot_id:
        return []
    with ctx.catalog.session() as s:
        snap = s.scalars(select(Snapshot).where(Snapshot.snapshot_id == snapshot_id)).first()
        return [e.study_uid for e in studies_at(s, ctx.site, node, snap.seq)] if snap else []


def _save_state(ctx: Context, state: dict | None) -> None:
    with ctx.catalog.session() as s:
        row = s.get(Setting, _key(ctx.site))
        if state is None:
            if row is not None:
                s.delete(row)
        else:
            s.merge(Setting(key=_key(ctx.site), value=json.dumps(state)))


def failover_state(ctx: Context) -> dict | None:
    with ctx.catalog.session() as s:
        row = s.get(Setting, _key(ctx.site))
        return json.loads(row.value) if row else None


def run_failback(ctx: Context, standby: str | None = None, *, to: str | None = None,
                 dry_run: bool = False) -> SwitchResult:
    """Send what the standby received while it served back to the primary and verify it
    there; list what was deleted on the standby. The failover state is cleared when every
    study was verified at the primary."""
    state = failover_state(ctx)
    if state is None:
        raise UsageError("no failover is recorded for this site (nothing to fail back)")
    if standby and standby != state["standby"]:
        raise UsageError(f"the recorded failover went to {state['standby']}, not {standby}")
    primary = to or state["primary"]
    result = SwitchResult("failback", state["standby"], primary, dry_run,
                          snapshot_id=state["snapshot_id"])
    source = pacs_node(ctx.settings, state["standby"])
    target = pacs_node(ctx.settings, primary)
    baseline = {uid: n for uid, n in _baseline(ctx, state).items()}
    live = _live_studies(source)
    result.studies_sent = sorted(u for u, n in live.items() if n > baseline.get(u, 0))
    result.studies_to_decide = sorted(set(baseline) - set(live))
    result.steps.append(Step("compare study sets", "done",
                             f"{len(result.studies_sent)} new or grown on the standby, "
                             f"{len(result.studies_to_decide)} deleted there (listed only)"))
    if dry_run:
        result.steps.append(Step("send to the primary and verify", "planned"))
        return result
    with ctx.run("failback", node=primary, details={"standby": state["standby"]}) as run:
        result.run_id = run.id
        problems = _send_back(ctx, source, target, result.studies_sent)
        result.steps.append(Step("send to the primary and verify",
                                 "failed" if problems else "done", "; ".join(problems[:5])))
        result.state = "failed" if problems else "succeeded"
        if problems:
            run.finish("failed", f"{len(problems)} problem(s) sending studies back")
        else:
            _save_state(ctx, None)
            if result.studies_to_decide:
                run.finish("warning", f"{len(result.studies_to_decide)} studies deleted on "
                           "the standby need a decision")
        run.details.update(result.to_json())
    return result


def _baseline(ctx: Context, state: dict) -> dict[str, int]:
    with ctx.catalog.session() as s:
        snap = s.scalars(select(Snapshot).where(
            Snapshot.snapshot_id == state["snapshot_id"])).first()
        if snap is None:
            raise UsageError(f"snapshot {state['snapshot_id'][:8]} of the failover is not in "
                             "the catalog (rebuild it: drctl catalog rebuild)")
        return {e.study_uid: e.instances for e in studies_at(s, ctx.site, snap.node, snap.seq)}


def _send_back(ctx: Context, source, target, studies: list[str]) -> list[str]:
    problems: list[str] = []
    root = ctx.settings.controller.state_dir / "failback"
    root.mkdir(parents=True, exist_ok=True)
    for uid in studies:
        work = Path(tempfile.mkdtemp(prefix="study-", dir=root))
        try:
            files = source.export_study(uid, work)
            summary = target.dicom_client().store_files(target.peer(), files)
            if summary.failed:
                problems.append(f"{uid}: {len(summary.failed)} instance(s) refused by the primary")
            sops = {_sop_uid(f) for f in files}
            problems += verify_study_at(target, uid, sops)
        except DrctlError as exc:
            problems.append(f"{uid}: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return problems


def _sop_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
               .SOPInstanceUID)
