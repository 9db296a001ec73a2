"""``drctl drill run``: restore a snapshot, bring a node up on it, prove every study of
its manifest over DICOM, measure RTO and RPO, and keep the evidence.

A drill that cannot prove a study is there fails: a study missing from the C-FIND, a count
that differs, a file missing or different, an instance not served or served with other
bytes, a check that could not complete. Passing needs every study of the manifest found
with its counts at index level, and the files (full drills) and sampled instances proven.

Steps (phases are timed; see :mod:`drctl.actions.drill_steps`): check the repository
(rotating ``--read-data-subset``, queued behind drctl's repository lock), restore
(sandbox or standby, full or partial), start and wait for C-ECHO, verify in layers;
then record the drill, its findings, RTO/RPO, the verification record and the report
(:mod:`drctl.actions.drill_record`).

Outcomes: the report (``verdict`` passed | failed); ``UnavailableError`` when the drill
could not start (repository unreachable: exit 3, the drill recorded as ``aborted``);
``Interrupted`` (recorded as ``interrupted``). The sandbox is removed in every case.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from drctl import locks
from drctl.actions import drill_record, drill_steps
from drctl.actions.context import Context
from drctl.actions.snapshots import resolve_snapshot
from drctl.catalog.models import IndexCopy, Snapshot
from drctl.catalog.queries import GOOD_SNAPSHOTS
from drctl.errors import Interrupted, SnapshotNotFound, UnavailableError, UsageError
from drctl.reports.model import DrillReport

log = logging.getLogger(__name__)


@dataclass
class DrillOptions:
    """What ``drctl drill run`` was asked. None means "as configured" (``[drill]``)."""

    snapshot: str | None = None  # an ID, "latest", or None: the newest good snapshot
    node: str | None = None  # the primary whose snapshot is drilled
    standby: str | None = None  # a standby node name; None: drill.mode
    sandbox: bool = False  # --sandbox: a sandbox whatever drill.mode says
    scope: str | None = None  # "full" | "partial"
    sample_studies: int | None = None
    sample_instances: int | None = None
    verify_all: bool | None = None
    report: Path | None = None
    seed: int | None = None
    # test hook between the restore and the start (fault injection): (node, plan) -> None
    before_start: Callable[[Any, Any], None] | None = None
    # progress for people: (phase, done, total) -> None
    on_progress: Callable[[str, int | None, int | None], None] | None = None


def run_drill(ctx: Context, options: DrillOptions) -> DrillReport:
    """Run one drill and return its report (verdict passed or failed). Raises UsageError
    (bad arguments), SnapshotNotFound, UnavailableError (could not start: recorded as
    aborted) and Interrupted (recorded as interrupted)."""
    primary = resolve_primary(ctx, options)
    target = resolve_target(ctx, options, primary)
    repo_name = ctx.settings.repository_of(primary)
    restic = ctx.restic(repo_name)
    drill_steps.validate_target(ctx, primary, target, options.scope)
    with (
        _standby_lock(ctx, target),
        ctx.run("drill", node=primary, repository=repo_name, details={"standby": target}) as run,
    ):
        drill_id = drill_record.start_drill(ctx, run.id, primary, repo_name, target)
        try:
            snapshot, copy = pick_snapshot(ctx, primary, options.snapshot)
        except SnapshotNotFound as exc:
            drill_record.abort_early(ctx, drill_id, f"could not start: {exc}")
            raise
        drill_record.set_snapshot(ctx, drill_id, snapshot)
        run.details["snapshot_id"] = snapshot.snapshot_id
        state = drill_steps.DrillState(
            ctx=ctx,
            run=run,
            drill_id=drill_id,
            primary=primary,
            target=target,
            repository=repo_name,
            restic=restic,
            snapshot=snapshot,
            copy=copy,
            options=options,
            seed=options.seed if options.seed is not None else secrets.randbits(32),
        )
        _execute(ctx, state)
        report = drill_record.finish(ctx, state)
        if report.verdict != "passed":
            run.finish("failed", report.reason)
        run.details.update(
            {"drill_id": drill_id, "verdict": report.verdict, "report": report.report_path}
        )
    return report


def _execute(ctx: Context, state: drill_steps.DrillState) -> None:
    """The steps, with every way out recorded: could not start or go on (aborted),
    interrupted, or a bug (failed); each is raised again."""
    try:
        state.restic.open()
        drill_steps.execute(state)
    except UnavailableError as exc:
        drill_record.end_without_verdict(ctx, state, "aborted", f"could not start: {exc}")
        raise
    except (Interrupted, KeyboardInterrupt) as exc:
        reason = str(exc) or "interrupted by a signal"
        drill_record.end_without_verdict(ctx, state, "interrupted", reason)
        raise
    except Exception as exc:
        drill_record.end_without_verdict(ctx, state, "failed", f"{type(exc).__name__}: {exc}")
        raise


def _standby_lock(ctx: Context, target: str):
    """The standby's node lock (replication and drills of it queue on it)."""
    if target == "sandbox":
        return contextlib.nullcontext()
    path = locks.lock_path(
        ctx.settings.controller.state_dir / "locks", "node", f"{ctx.site}/{target}"
    )
    return locks.try_hold(path, what=f"drill on standby {target}")


def resolve_primary(ctx: Context, options: DrillOptions) -> str:
    """The primary whose snapshot is drilled: --node, else the standby's ``primary``,
    else the only primary. UsageError otherwise."""
    nodes = ctx.settings.node
    if options.node:
        node = ctx.node(options.node)
        if node.role != "primary":
            raise UsageError(
                f"node {options.node} is a standby; --node names the primary "
                "whose snapshot is drilled"
            )
        return options.node
    standby = options.standby or (
        ctx.settings.drill.mode if ctx.settings.drill.mode != "sandbox" else None
    )
    if standby and not options.sandbox and standby in nodes and nodes[standby].primary:
        return nodes[standby].primary  # type: ignore[return-value]
    primaries = list(ctx.settings.primaries())
    if len(primaries) == 1:
        return primaries[0]
    if not primaries:
        raise UsageError(f"no primary node in {ctx.settings.source}")
    raise UsageError(f"several primaries ({', '.join(primaries)}): say which with --node")


def resolve_target(ctx: Context, options: DrillOptions, primary: str) -> str:
    """``"sandbox"`` or the standby's name (--sandbox / --standby / drill.mode). A standby
    must be role standby and belong to this host's agent (the drill writes its files)."""
    if options.sandbox and options.standby:
        raise UsageError("--sandbox and --standby exclude each other")
    name = "sandbox" if options.sandbox else (options.standby or ctx.settings.drill.mode)
    if name == "sandbox":
        return name
    node = ctx.node(name)
    if node.role != "standby":
        raise UsageError(f"node {name} is not a standby (role = {node.role!r})")
    if node.agent != ctx.acting_agent:
        raise UsageError(
            f"standby {name} belongs to agent {node.agent}; run the drill there "
            f"(this process acts as agent {ctx.acting_agent})"
        )
    return name


def pick_snapshot(ctx: Context, node: str, ref: str | None) -> tuple[Snapshot, IndexCopy | None]:
    """The snapshot to drill and its paired index copy: ``ref`` (an ID), or the newest
    snapshot of ``node`` whose status is complete or warning (``latest`` too). Raises
    SnapshotNotFound."""
    if ref and ref != "latest":
        snapshot = resolve_snapshot(ctx, ref, node=node)
    else:
        with ctx.catalog.session() as s:
            snapshot = s.scalars(
                select(Snapshot)
                .where(
                    Snapshot.site == ctx.site,
                    Snapshot.node == node,
                    Snapshot.forgotten_at.is_(None),
                    Snapshot.status.in_(GOOD_SNAPSHOTS),
                )
                .order_by(Snapshot.time.desc(), Snapshot.id.desc())
                .limit(1)
            ).first()
        if snapshot is None:
            raise SnapshotNotFound(
                f"node {node} has no complete snapshot in the catalog",
                hint="run `drctl backup run` first, or name one with --snapshot",
            )
    with ctx.catalog.session() as s:
        copy = s.get(IndexCopy, snapshot.index_copy_id) if snapshot.index_copy_id else None
    return snapshot, copy
