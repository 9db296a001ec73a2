"""PostgreSQL replication: dump mode and streaming mode.

Dump mode: ``pg_dump -Fc`` of the running primary on an exported snapshot (the change
position and study count are read in the same snapshot), ``pg_restore`` into a NEW
database ``<db>_drctl_new`` at the standby, checked, then the standby is stopped and the
names swapped in one transaction (``<db>`` -> ``<db>_drctl_prev``, new -> ``<db>``) and the
standby started. Until the swap the standby keeps running on its previous database: a
failed or killed restore changes nothing it uses; a half-restored database left by a
killed run is dropped by the next run. One previous generation is kept.

Streaming mode: nothing to copy; the replica's lag is measured (bytes first) and recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from drctl.actions.context import Context
from drctl.actions.replicate_sqlite import restart_around
from drctl.actions.replication_plan import Applied, Plan, staging
from drctl.config import Node, format_duration
from drctl.errors import DrctlError, JobFailed
from drctl.indexdb import pg_databases, pg_replica, postgres_index
from drctl.indexdb.postgres_index import PgTarget
from drctl.pacs.base import IndexCopy, PacsNode, pacs_node

log = logging.getLogger(__name__)

NEW_SUFFIX = "_drctl_new"
PREV_SUFFIX = "_drctl_prev"


@dataclass(frozen=True)
class Names:
    live: str
    new: str
    prev: str

    @classmethod
    def of(cls, database: str) -> Names:
        return cls(
            database,
            pg_databases.check_name(database + NEW_SUFFIX),
            pg_databases.check_name(database + PREV_SUFFIX),
        )


def _password(node: Node) -> str | None:
    return node.index_password.resolve() if node.index_password else None


def replicate_dump(ctx: Context, plan: Plan, run, *, fresh: bool = False) -> Applied:
    """Dump the primary, restore into a new standby database, swap it in. Raises JobFailed
    (the standby keeps its previous database) or NodeUnreachable."""
    primary = pacs_node(ctx.settings, plan.primary)
    standby = pacs_node(ctx.settings, plan.standby)
    target = PgTarget.parse(plan.standby_node.index)
    password = _password(plan.standby_node)
    names = Names.of(target.database)
    conn = pg_databases.admin_connection(target, password)
    try:
        details: dict[str, Any] = {"database": names.live, "cleaned_up": []}
        if pg_databases.drop(conn, names.new):  # left by a killed or failed run
            details["cleaned_up"].append(names.new)
        started = time.monotonic()
        copy = _dump_and_restore(ctx, plan, primary, standby, conn, target, password, names)
        details["dump_restore_s"] = round(time.monotonic() - started, 3)
        if pg_databases.drop(conn, names.prev):
            details["dropped_generation"] = names.prev
        outage = _swap(standby, conn, names, details)
    finally:
        conn.close()
    log.info(
        "standby %s: database %s replaced (%d studies, outage %.1fs)",
        plan.standby,
        names.live,
        copy.inventory,
        outage,
    )
    return Applied(
        str(copy.change_seq),
        copy.taken_at,
        copy.bytes,
        copy.inventory,
        outage_s=outage,
        details=details,
    )


def _dump_and_restore(
    ctx: Context,
    plan: Plan,
    primary: PacsNode,
    standby: PacsNode,
    conn: Any,
    target: PgTarget,
    password: str | None,
    names: Names,
) -> IndexCopy:
    """The primary's online dump restored into ``names.new`` and checked; the new
    database is dropped again when anything fails (or drctl is interrupted)."""
    folder = staging(ctx.settings.controller.state_dir, ctx.site, plan.standby)
    copy = primary.copy_index(folder, lambda inventory: len(inventory.study_summaries()))
    try:
        pg_databases.create(conn, names.new)
        try:
            postgres_index.restore(
                target.with_database(names.new),
                password,
                copy.path,
                timeout=ctx.settings.controller.timeouts.command * 6,
            )
            _check_restored(standby, names.new, copy)
        except BaseException:
            _drop_quietly(conn, names.new)
            raise
    finally:
        copy.path.unlink(missing_ok=True)
    return copy


def _check_restored(standby: PacsNode, database: str, copy: IndexCopy) -> None:
    """The restored database must hold what the dump's snapshot held."""
    with standby.open_index(database=database) as inventory:
        seq = inventory.last_change_seq()
        studies = len(inventory.study_summaries())
    if seq != copy.change_seq or studies != copy.inventory:
        raise JobFailed(
            f"restored database {database} holds {studies} studies up to change "
            f"{seq}; the dump held {copy.inventory} up to {copy.change_seq}"
        )


def _drop_quietly(conn: Any, name: str) -> None:
    try:
        pg_databases.drop(conn, name)
    except Exception as exc:  # the next run drops it; the original failure matters more
        log.warning("could not drop %s after a failed restore: %s", name, exc)


def _swap(standby: PacsNode, conn: Any, names: Names, details: dict) -> float:
    """Stop the standby, swap names, start it; if it does not start on the new database,
    swap back and start it on the previous one. Returns the outage."""
    had_live: list[bool] = []
    try:
        details["outage"] = {}
        return restart_around(
            standby,
            lambda: had_live.append(
                pg_databases.swap(conn, live=names.live, new=names.new, prev=names.prev)
            ),
            details["outage"],
        )
    except DrctlError as exc:
        if not had_live:
            raise  # the swap itself failed: nothing changed
        if not had_live[0]:
            raise JobFailed(f"standby did not start on the replicated database: {exc}") from None
        log.error(
            "standby %s did not start on the new database; restoring the previous", standby.name
        )
        restart_around(
            standby,
            lambda: pg_databases.swap(conn, live=names.live, new=names.prev, prev=names.new),
        )
        details["rolled_back"] = True
        raise JobFailed(
            f"standby {standby.name} did not start on the replicated database "
            f"({exc}); the previous database is back in use"
        ) from None


def replicate_streaming(ctx: Context, plan: Plan, run) -> Applied:
    """Measure the streaming replica's lag (nothing to copy). A lag beyond
    ``drill.max_rpo`` ends the run in state warning."""
    lag = pg_replica.measure(
        PgTarget.parse(plan.primary_node.index),
        _password(plan.primary_node),
        PgTarget.parse(plan.standby_node.index),
        _password(plan.standby_node),
        name=plan.standby,
    )
    applied = Applied(
        lag.replay_lsn,
        lag.measured_at - timedelta(seconds=lag.lag_s),
        lag_s=lag.lag_s,
        lag_bytes=lag.lag_bytes,
        details={"lag": lag.to_json()},
    )
    max_rpo = ctx.settings.drill.max_rpo
    if lag.lag_s > max_rpo:
        applied.warning = (
            f"replica {plan.standby} is {format_duration(lag.lag_s)} "
            f"({lag.lag_bytes} bytes) behind, more than drill.max_rpo "
            f"{format_duration(max_rpo)}"
        )
    return applied
