"""Read-only catalog queries shared by the scheduler's watchdog, ``drctl status`` (one
site or the fleet) and the site report, so they judge the same rows the same way.

Every query is bounded (newest rows, aggregates) and keyed by site: one PostgreSQL
catalog may hold several sites.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from drctl.catalog.models import Replication, Run, Snapshot, UTCDateTime

# snapshots a restore can use (a suspect or incomplete one is not restorable)
GOOD_SNAPSHOTS = ("complete", "warning")
# runs that did their job (a warning names something to look at, the job was still done)
GOOD_RUN_STATES = ("succeeded", "warning")


def newest_good_snapshots(session: Session, site: str) -> dict[str, datetime]:
    """Per node, the time of its newest restorable pair (``pair_time``, else ``time``) among
    complete or warning snapshots that were not forgotten."""
    when = type_coerce(func.max(func.coalesce(Snapshot.pair_time, Snapshot.time)), UTCDateTime())
    rows = session.execute(
        select(Snapshot.node, when)
        .where(
            Snapshot.site == site,
            Snapshot.status.in_(GOOD_SNAPSHOTS),
            Snapshot.forgotten_at.is_(None),
        )
        .group_by(Snapshot.node)
    ).all()
    return {node: t for node, t in rows if t is not None}


def newest_replications(session: Session, site: str) -> dict[str, Replication]:
    """Per standby, its newest replication row."""
    newest = (
        select(func.max(Replication.id))
        .where(Replication.site == site)
        .group_by(Replication.standby)
    )
    rows = session.scalars(select(Replication).where(Replication.id.in_(newest))).all()
    return {row.standby: row for row in rows}


def newest_runs(session: Session, site: str, kinds: tuple[str, ...] | None = None) -> list[Run]:
    """The newest run of each (kind, node, repository) of ``site`` (of ``kinds`` when
    given): what each job or command last did on each target."""
    newest = select(func.max(Run.id)).where(Run.site == site)
    if kinds:
        newest = newest.where(Run.kind.in_(kinds))
    newest = newest.group_by(Run.kind, Run.node, Run.repository)
    return list(session.scalars(select(Run).where(Run.id.in_(newest)).order_by(Run.id)))


def sites(session: Session) -> list[str]:
    """Every site that recorded a run or a snapshot in this catalog."""
    found = set(session.scalars(select(Run.site).distinct()))
    found |= set(session.scalars(select(Snapshot.site).distinct()))
    return sorted(found)
