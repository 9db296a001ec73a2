"""SQLite replication: the newest consistent index copy travels through the repository
(encrypted: the index holds patient names; never a plain object in the bucket) and is
installed at the standby.

Order: take the copy out of the repository, check it (integrity, change position), stage
it beside the standby's index (same filesystem), fsync; only then stop the standby, fold
its old WAL in, rename the staged file over the index, start the standby. A crash at any
point leaves the complete old index or the complete new one, never a mix; a leftover
staged file is overwritten by the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import exists, select

from drctl import locks
from drctl.actions.context import Context
from drctl.actions.indexcopy import add_copy_rows, take_copy
from drctl.actions.replication_plan import Applied, Plan, drilled_since, staging
from drctl.catalog.models import IndexCopy, Record, Replication
from drctl.errors import JobFailed
from drctl.indexdb import sqlite_index
from drctl.pacs.base import PacsNode, pacs_node
from drctl.restic.runner import Restic
from drctl.verify.records import record_filename

log = logging.getLogger(__name__)


def replicate_sqlite(ctx: Context, plan: Plan, run, *, fresh: bool) -> Applied:
    """Install the primary's newest stored index copy (a new one with ``fresh``) at the
    standby. Raises JobFailed when there is no usable copy or it fails its checks."""
    repo_name = ctx.settings.repository_of(plan.primary)
    restic = ctx.restic(repo_name)
    restic.probe()
    primary = pacs_node(ctx.settings, plan.primary)
    row = _pick_copy(ctx, primary, restic, repo_name, run.id, fresh=fresh)
    target = plan.standby_node.index_path
    assert target is not None
    details = {
        "record_id": row.record_id,
        "repository": repo_name,
        "fresh": fresh,
        "copy_method": row.method,
    }
    if not fresh and target.exists() and _installed(ctx, plan.standby, row.id):
        skipped = f"the standby already runs index copy {row.record_id[:8]}"
        return Applied(
            str(row.change_seq),
            row.taken_at,
            0,
            row.studies,
            row.id,
            skipped=skipped,
            details=details,
        )
    folder = staging(ctx.settings.controller.state_dir, ctx.site, plan.standby)
    studies, seq, staged = _stage(restic, primary, row, folder / "index.sqlite", target)
    standby = pacs_node(ctx.settings, plan.standby)
    details["outage"] = {}
    outage = restart_around(
        standby, lambda: sqlite_index.swap_in(staged, target), details["outage"]
    )
    log.info(
        "standby %s: index copy %s installed (%d studies, outage %.1fs)",
        plan.standby,
        row.record_id[:8],
        studies,
        outage,
    )
    return Applied(
        str(seq), row.taken_at, row.bytes, studies, row.id, outage_s=outage, details=details
    )


def _pick_copy(
    ctx: Context, primary: PacsNode, restic: Restic, repository: str, run_id: int, *, fresh: bool
) -> IndexCopy:
    """The copy to install: a fresh one, or the newest stored. JobFailed when none."""
    if fresh:
        return _fresh_copy(ctx, primary, restic, repository, run_id)
    row = _newest_copy(ctx, primary.name, repository)
    if row is None:
        raise JobFailed(
            f"no index copy of {primary.name} in repository {repository} yet",
            hint=f"run `drctl backup run --node {primary.name}` first, or "
            "`drctl replicate run --fresh`",
        )
    return row


def _stage(
    restic: Restic, primary: PacsNode, row: IndexCopy, copy: Path, target: Path
) -> tuple[int, int, Path]:
    """Take the copy out of the repository, check it and stage it beside ``target``.
    Returns (studies, change position, staged file); the plain copy is removed."""
    try:
        restic.dump_to(row.record_id, "/" + record_filename("index", primary.name, "sqlite"), copy)
        studies, seq = _check_copy(primary, copy, row)
        return studies, seq, sqlite_index.prepare_install(copy, target)
    finally:
        copy.unlink(missing_ok=True)


def restart_around(node: PacsNode, change: Callable[[], None], phases: dict | None = None) -> float:
    """Stop ``node``, run ``change``, start it again (also when ``change`` failed: the
    node comes back on whatever index it has). Returns the outage: stop to C-ECHO;
    ``phases`` receives the seconds of each step (``stop_s``, ``swap_s``, ``start_s``)."""
    phases = {} if phases is None else phases
    started = time.monotonic()
    node.stop()
    phases["stop_s"] = round(time.monotonic() - started, 3)
    try:
        change()
    except BaseException:
        try:
            node.start()
        except Exception as exc:  # the original failure is what the run must report
            log.error("node %s did not come back after a failed swap: %s", node.name, exc)
        raise
    swapped = time.monotonic()
    phases["swap_s"] = round(swapped - started - phases["stop_s"], 3)
    node.start()
    phases["start_s"] = round(time.monotonic() - swapped, 3)
    return time.monotonic() - started


def _newest_copy(ctx: Context, primary: str, repository: str) -> IndexCopy | None:
    """The primary's newest SQLite copy that passed its checks and is still in the
    repository."""
    forgotten = exists().where(
        Record.repository == IndexCopy.repository,
        Record.record_id == IndexCopy.record_id,
        Record.forgotten_at.is_not(None),
    )
    with ctx.catalog.session() as s:
        return s.scalars(
            select(IndexCopy)
            .where(
                IndexCopy.site == ctx.site,
                IndexCopy.node == primary,
                IndexCopy.repository == repository,
                IndexCopy.kind == "sqlite",
                IndexCopy.integrity == "ok",
                ~forgotten,
            )
            .order_by(IndexCopy.taken_at.desc(), IndexCopy.id.desc())
            .limit(1)
        ).first()


def _fresh_copy(
    ctx: Context, primary: PacsNode, restic: Restic, repository: str, run_id: int
) -> IndexCopy:
    """A new copy with the primary's ``index_copy`` method, stored and catalogued like a
    backup's (the primary's node lock keeps a backup's copy from colliding with it)."""

    def counts(inventory) -> tuple[int, int, int]:
        studies = inventory.study_summaries()
        return (inventory.max_internal_id(), len(studies), sum(s.instance_count for s in studies))

    lock = locks.lock_path(
        ctx.settings.controller.state_dir / "locks", "node", f"{ctx.site}/{primary.name}"
    )
    with locks.try_hold(lock, what=f"index copy of node {primary.name}"):
        stored = take_copy(ctx, primary, restic, counts)
    max_id, studies, instances = stored.copy.inventory
    with ctx.catalog.session() as s:
        row_id = add_copy_rows(
            s,
            ctx,
            stored,
            repository=repository,
            run_id=run_id,
            max_internal_id=max_id,
            studies=studies,
            instances=instances,
        )
    with ctx.catalog.session() as s:
        row = s.get(IndexCopy, row_id)
    assert row is not None
    return row


def _installed(ctx: Context, standby: str, copy_id: int) -> bool:
    """True when the standby's newest replication installed copy ``copy_id`` and no drill
    has restored another index onto it since."""
    with ctx.catalog.session() as s:
        newest = s.scalars(
            select(Replication)
            .where(Replication.site == ctx.site, Replication.standby == standby)
            .order_by(Replication.finished_at.desc(), Replication.id.desc())
            .limit(1)
        ).first()
        if newest is None or newest.index_copy_id != copy_id:
            return False
        return drilled_since(s, ctx.site, standby, newest.finished_at) is None


def _check_copy(primary: PacsNode, copy, row: IndexCopy) -> tuple[int, int]:
    """(studies, change position) of a copy taken out of the repository; JobFailed when
    it is damaged or is not the copy the catalog describes."""
    sqlite_index.check_integrity(copy)
    with primary.open_copy(copy) as inventory:
        seq = inventory.last_change_seq()
        studies = len(inventory.study_summaries())
    if row.change_seq is not None and seq != row.change_seq:
        raise JobFailed(
            f"index copy {row.record_id[:8]} ends at change {seq}, the catalog "
            f"says {row.change_seq}: not the copy that was recorded"
        )
    return studies, seq
