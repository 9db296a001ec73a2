"""What a replication works with: which standby mirrors which primary, in which mode, and
what one replication leaves behind (:class:`Applied`).

Modes (``[node.<standby>] replication``; default from the primary's index kind):

- ``sqlite``: the newest consistent index copy travels through the repository and is
  installed at the standby (SQLite primary and standby).
- ``dump``: ``pg_dump`` of the running primary restored into a new database at the
  standby, then swapped in (PostgreSQL primary and standby).
- ``streaming``: the standby's index is a PostgreSQL streaming replica; drctl measures
  its lag (nothing to copy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from drctl.catalog.models import Drill
from drctl.config import Node, Settings
from drctl.errors import DrctlError, UsageError
from drctl.pacs.base import PacsNode

log = logging.getLogger(__name__)

MODES = ("sqlite", "dump", "streaming")
PRIMARY_POSITION_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Plan:
    """One standby and the primary it mirrors."""

    standby: str
    primary: str
    mode: str
    standby_node: Node
    primary_node: Node


@dataclass
class Applied:
    """What a replication left at the standby. ``source_time`` is the point in time the
    standby's index reflects; ``position`` the primary's change sequence (or WAL LSN) it
    holds; ``skipped`` says why nothing had to be done."""

    position: str | None
    source_time: datetime | None
    bytes: int = 0
    studies: int | None = None
    index_copy_id: int | None = None
    outage_s: float | None = None
    lag_s: float | None = None
    lag_bytes: int | None = None
    skipped: str | None = None
    warning: str | None = None
    details: dict = field(default_factory=dict)


def default_mode(primary: Node) -> str:
    return "sqlite" if primary.index_kind == "sqlite" else "dump"


def _primary_of(settings: Settings, name: str, node: Node) -> str:
    if node.primary:
        return node.primary
    primaries = list(settings.primaries())
    if len(primaries) == 1:
        return primaries[0]
    raise UsageError(
        f"{settings.source}: node.{name}.primary: name the primary this standby "
        f"mirrors ({len(primaries)} primaries are configured)"
    )


def plan_for(settings: Settings, standby: str) -> Plan:
    """The replication plan of ``standby``. Raises UsageError (naming the key) for a node
    that is not a standby or a mode its index kinds do not allow."""
    node = settings.node.get(standby)
    if node is None:
        known = ", ".join(settings.standbys()) or "none"
        raise UsageError(f"no node named {standby!r} in {settings.source} (standbys: {known})")
    if node.role != "standby":
        raise UsageError(f"node {standby} is a primary; replicate to one of its standbys")
    primary = _primary_of(settings, standby, node)
    source = settings.node[primary]
    if source.role != "primary":
        raise UsageError(f"{settings.source}: node.{standby}.primary: {primary} is not a primary")
    mode = node.replication or default_mode(source)
    key = f"{settings.source}: node.{standby}"
    wanted = "sqlite" if mode == "sqlite" else "postgresql"
    if source.index_kind != wanted or node.index_kind != wanted:
        raise UsageError(
            f"{key}.replication: {mode!r} needs a {wanted} index on both "
            f"{primary} ({source.index_kind}) and {standby} ({node.index_kind})"
        )
    if mode != "streaming" and not (node.start and node.stop):
        raise UsageError(
            f"{key}.stop: start and stop commands are required: the standby "
            f"is stopped while its index is swapped ({mode} replication)"
        )
    return Plan(standby, primary, mode, node, source)


def standbys_for(settings: Settings, name: str | None, agent: str | None = None) -> list[str]:
    """The named standby, or every standby (of ``agent``). UsageError when there is none."""
    if name:
        plan_for(settings, name)
        return [name]
    found = [n for n, v in settings.standbys().items() if agent is None or v.agent == agent]
    if not found:
        raise UsageError(f'no standby node (role = "standby") in {settings.source}')
    return found


def staging(state_dir: Path, site: str, standby: str) -> Path:
    """Private working folder of a standby's replications (copies hold patient names:
    files are removed as soon as they are installed)."""
    folder = state_dir / "replicate" / site / standby
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def primary_position(primary: PacsNode) -> int | None:
    """The running primary's change position, or None when it does not answer."""
    try:
        return primary.last_change(timeout=PRIMARY_POSITION_TIMEOUT_S)
    except DrctlError as exc:
        log.info("primary %s: change position unknown (%s)", primary.name, exc)
        return None


def drilled_since(session: Any, site: str, standby: str, since: datetime) -> int | None:
    """The newest drill that restored a snapshot onto ``standby`` after ``since`` (its
    index is then the drilled snapshot's, no longer the replicated one), or None."""
    return session.scalars(
        select(Drill.id)
        .where(Drill.site == site, Drill.standby == standby, Drill.started_at > since)
        .order_by(Drill.started_at.desc())
        .limit(1)
    ).first()


def primary_changed(primary: PacsNode, position: str | None, current: int | None) -> bool | None:
    """Whether the primary recorded a content change after ``position`` (None: unknown,
    e.g. the primary does not answer, or the position is not a change sequence)."""
    if current is None or position is None or not position.isdigit():
        return None
    if current == int(position):
        return False
    try:
        return primary.changed_between(int(position), timeout=PRIMARY_POSITION_TIMEOUT_S)
    except DrctlError as exc:
        log.info("primary %s: changes since %s unknown (%s)", primary.name, position, exc)
        return None


def copy_lag(
    source_time: datetime | None, changed: bool | None, now: datetime | None = None
) -> float | None:
    """Seconds of changes a copy-mode standby lacks: 0 when the primary recorded no
    content change since the copy (``changed`` False), else the time since
    ``source_time`` (everything since may be missing; unknown counts as changed)."""
    if source_time is None:
        return None
    if changed is False:
        return 0.0
    return max(0.0, ((now or datetime.now(UTC)) - source_time).total_seconds())
