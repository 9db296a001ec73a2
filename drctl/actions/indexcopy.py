"""Index copies: a consistent copy of a node's index, stored in the repository as a drctl
record (encrypted: the index holds patient names; never a plain object in the bucket).

The copy may run on its own, less frequent schedule (``schedule.index_copy``, when the
method is disruptive); storage snapshots then pair with the newest copy, and the pair's
time is the older of the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from drctl.actions.context import Context
from drctl.catalog.models import IndexCopy as IndexCopyRow
from drctl.catalog.models import Record
from drctl.indexdb import sqlite_index
from drctl.pacs.base import IndexCopy, PacsNode
from drctl.restic.argv import restic_host
from drctl.restic.messages import Snapshot as ResticSnapshot
from drctl.restic.runner import Restic
from drctl.verify.records import record_filename, record_tags

log = logging.getLogger(__name__)


@dataclass
class StoredCopy:
    copy: IndexCopy
    record: ResticSnapshot | None  # None when reused (already stored)
    row_id: int | None  # catalog id of the IndexCopy row (reused copies have one)
    reused: bool


def staging_dir(ctx: Context, node: str) -> Path:
    """The fixed staging folder of a node's index copy (fixed path: restic finds the
    previous copy as parent). An index copy holds patient names: the staging root is
    the owner's alone (mode 0700, also for folders made by older versions)."""
    root = ctx.settings.controller.state_dir / "staging"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if root.stat().st_mode & 0o077:
        root.chmod(0o700)
    return root / ctx.site / node


def take_copy(ctx: Context, pacs: PacsNode, restic: Restic,
              read: Callable[[Any], Any] | None) -> StoredCopy:
    """A fresh consistent copy, stored in the repository as a record."""
    copy = pacs.copy_index(staging_dir(ctx, pacs.name), read)
    copy.path.chmod(0o600)
    ctx.check_fence()
    suffix = "sqlite" if copy.kind == "sqlite" else "dump"
    record = restic.backup_file(
        copy.path, filename=record_filename("index", pacs.name, suffix),
        host=restic_host(ctx.site, pacs.name),
        tags=record_tags("index", site=ctx.site, node=pacs.name, method=copy.method,
                         format=copy.kind))
    log.info("node %s: index copy %s (%s, %d bytes) stored as %s", pacs.name, copy.kind,
             copy.method, copy.bytes, record.short_id)
    return StoredCopy(copy, record, None, reused=False)


def reuse_copy(ctx: Context, pacs: PacsNode, restic: Restic, read: Callable[[Any], Any] | None,
               repository: str) -> StoredCopy | None:
    """The node's newest stored SQLite copy, re-read for this snapshot (None if there is
    none). The staged file is used when it is the same copy, else restored from the
    repository."""
    with ctx.catalog.session() as s:
        row = s.scalars(select(IndexCopyRow).where(
            IndexCopyRow.site == ctx.site, IndexCopyRow.node == pacs.name,
            IndexCopyRow.repository == repository, IndexCopyRow.kind == "sqlite",
        ).order_by(IndexCopyRow.taken_at.desc()).limit(1)).first()
    if row is None:
        return None
    path = staging_dir(ctx, pacs.name) / "index.sqlite"
    if not path.is_file() or path.stat().st_size != row.bytes:
        path.parent.mkdir(parents=True, exist_ok=True)
        restic.dump_to(row.record_id, "/" + record_filename("index", pacs.name, "sqlite"), path)
    sqlite_index.check_integrity(path)
    with pacs.open_copy(path) as inventory:
        result = read(inventory) if read else None
    copy = IndexCopy(path, "sqlite", row.method, row.taken_at, row.bytes, row.outage_s,
                     row.change_seq, row.integrity, result)
    return StoredCopy(copy, None, row.id, reused=True)


def add_copy_rows(session, ctx: Context, stored: StoredCopy, *, repository: str,
                  run_id: int, max_internal_id: int | None, studies: int | None,
                  instances: int | None) -> int:
    """Record a freshly stored copy in the catalog; returns the IndexCopy row id."""
    if stored.reused:
        assert stored.row_id is not None
        return stored.row_id
    assert stored.record is not None
    copy, node = stored.copy, stored.record.tag_value("node")
    row = IndexCopyRow(repository=repository, record_id=stored.record.id, site=ctx.site,
                       node=node, kind=copy.kind, method=copy.method, taken_at=copy.taken_at,
                       bytes=copy.bytes, outage_s=copy.outage_s, change_seq=copy.change_seq,
                       max_internal_id=max_internal_id, studies=studies, instances=instances,
                       integrity=copy.integrity, run_id=run_id)
    session.add(row)
    session.add(Record(repository=repository, record_id=stored.record.id, kind="index",
                       site=ctx.site, node=node, refers_to=None, time=stored.record.time))
    session.flush()
    return row.id


def run_index_copy(ctx: Context, node: str, *, repository: str | None = None) -> dict:
    """``drctl backup index-copy``: a fresh index copy on its own (its own schedule)."""
    from drctl.pacs.base import pacs_node

    repo_name = repository or ctx.settings.repository_of(node)
    restic = ctx.restic(repo_name)
    pacs = pacs_node(ctx.settings, node)
    with ctx.run("index_copy", node=node, repository=repo_name) as run:
        restic.probe()

        def counts(inventory) -> tuple[int, int, int]:
            studies = inventory.study_summaries()
            return (inventory.max_internal_id(), len(studies),
                    sum(s.instance_count for s in studies))

        stored = take_copy(ctx, pacs, restic, counts)
        max_id, studies, instances = stored.copy.inventory
        with ctx.catalog.session() as s:
            add_copy_rows(s, ctx, stored, repository=repo_name, run_id=run.id,
                          max_internal_id=max_id, studies=studies, instances=instances)
        result = {"run_id": run.id, "node": node, "repository": repo_name,
                  "record_id": stored.record.id, "kind": stored.copy.kind,
                  "method": stored.copy.method, "bytes": stored.copy.bytes,
                  "outage_s": stored.copy.outage_s, "studies": studies,
                  "instances": instances, "taken_at": stored.copy.taken_at.isoformat(),
                  "state": "succeeded"}
        run.details.update(result)
    return result


def copy_age(copy: IndexCopy) -> float:
    return (datetime.now(UTC) - copy.taken_at).total_seconds()
