"""``drctl replicate status``: how far behind each standby really is.

Two clocks (architecture.md, "RPO, honestly"): the standby's index and the images it can
be given (the newest complete storage snapshot of its primary). A standby is only as
recent as the older of the two, so ``rpo_s`` = max(index lag, image age): a current
replica over stale images still breaches ``drill.max_rpo``, and replication never masks a
dead backup. The index lag is change-aware (0 when the primary recorded nothing since the
standby's position; a streaming replica is measured, bytes first), so an idle night is
not a breach. A standby whose index is newer than its images would list studies it cannot
serve: it is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from drctl.actions.context import Context
from drctl.actions.replication_plan import (
    PRIMARY_POSITION_TIMEOUT_S,
    Plan,
    copy_lag,
    drilled_since,
    plan_for,
    primary_changed,
    primary_position,
)
from drctl.catalog.models import IndexCopy, Replication, Run, Snapshot
from drctl.catalog.queries import GOOD_SNAPSHOTS
from drctl.config import format_duration
from drctl.errors import DrctlError
from drctl.indexdb import pg_replica
from drctl.indexdb.postgres_index import PgTarget
from drctl.pacs.base import PacsNode, pacs_node


@dataclass
class StandbyStatus:
    standby: str
    primary: str
    mode: str
    max_rpo_s: float
    last_success: datetime | None = None
    last_run: dict | None = None
    position: str | None = None
    primary_position: int | None = None
    index_time: datetime | None = None
    index_age_s: float | None = None
    lag_s: float | None = None
    lag_bytes: int | None = None
    image_snapshot: str | None = None
    image_time: datetime | None = None
    image_status: str | None = None
    image_age_s: float | None = None
    rpo_s: float | None = None
    index_newer_than_images: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        def sec(value: float | None) -> float | None:
            return round(value, 3) if value is not None else None

        return {
            "standby": self.standby,
            "primary": self.primary,
            "mode": self.mode,
            "ok": self.ok,
            "last_success": iso(self.last_success),
            "last_run": self.last_run,
            "position": self.position,
            "primary_position": self.primary_position,
            "index_time": iso(self.index_time),
            "index_age_s": sec(self.index_age_s),
            "lag_s": sec(self.lag_s),
            "lag_bytes": self.lag_bytes,
            "image_snapshot": self.image_snapshot,
            "image_time": iso(self.image_time),
            "image_status": self.image_status,
            "image_age_s": sec(self.image_age_s),
            "rpo_s": sec(self.rpo_s),
            "max_rpo_s": self.max_rpo_s,
            "index_newer_than_images": self.index_newer_than_images,
            "problems": self.problems,
            "notes": self.notes,
        }


def replication_status(ctx: Context, standbys: list[str]) -> list[StandbyStatus]:
    """The status of each standby in ``standbys`` (names checked by the caller)."""
    return [_status(ctx, plan_for(ctx.settings, name)) for name in standbys]


def _status(ctx: Context, plan: Plan) -> StandbyStatus:
    now = datetime.now(UTC)
    st = StandbyStatus(plan.standby, plan.primary, plan.mode, ctx.settings.drill.max_rpo)
    _runs(ctx, st)
    primary = pacs_node(ctx.settings, plan.primary)
    st.primary_position = primary_position(primary)
    snap_seq = _images(ctx, st, now)
    if plan.mode == "streaming":
        _streaming_index(plan, st)
    else:
        _copy_index(ctx, primary, st, now)
    if st.lag_s is not None and st.image_age_s is not None:
        st.rpo_s = max(st.lag_s, st.image_age_s)
    _newer(primary, st, snap_seq)
    _judge(st)
    return st


def _runs(ctx: Context, st: StandbyStatus) -> None:
    with ctx.catalog.session() as s:
        runs = select(Run).where(
            Run.site == ctx.site, Run.kind == "replicate", Run.node == st.standby
        )
        last = s.scalars(runs.order_by(Run.started_at.desc(), Run.id.desc()).limit(1)).first()
        good = s.scalars(
            runs.where(Run.state.in_(("succeeded", "warning")))
            .order_by(Run.started_at.desc(), Run.id.desc())
            .limit(1)
        ).first()
    if last is not None:
        st.last_run = {
            "run_id": last.id,
            "state": last.state,
            "reason": last.reason,
            "started_at": last.started_at.isoformat(),
            "ended_at": last.ended_at.isoformat() if last.ended_at else None,
        }
    if good is not None:
        st.last_success = good.ended_at


def _images(ctx: Context, st: StandbyStatus, now: datetime) -> int | None:
    """Newest restorable storage snapshot of the primary; returns the change position of
    the index copy it was paired with (None when unknown)."""
    with ctx.catalog.session() as s:
        row = s.execute(
            select(Snapshot, IndexCopy.change_seq)
            .outerjoin(IndexCopy, IndexCopy.id == Snapshot.index_copy_id)
            .where(
                Snapshot.site == ctx.site,
                Snapshot.node == st.primary,
                Snapshot.status.in_(GOOD_SNAPSHOTS),
                Snapshot.forgotten_at.is_(None),
            )
            .order_by(Snapshot.time.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    snap, seq = row
    st.image_snapshot, st.image_time, st.image_status = snap.snapshot_id, snap.time, snap.status
    st.image_age_s = max(0.0, (now - snap.time).total_seconds())
    return seq


def _copy_index(ctx: Context, primary: PacsNode, st: StandbyStatus, now: datetime) -> None:
    with ctx.catalog.session() as s:
        rep = s.scalars(
            select(Replication)
            .where(
                Replication.site == ctx.site,
                Replication.standby == st.standby,
            )
            .order_by(Replication.finished_at.desc(), Replication.id.desc())
            .limit(1)
        ).first()
        drill = drilled_since(s, ctx.site, st.standby, rep.finished_at) if rep else None
    if rep is None or rep.source_time is None:
        return
    if drill is not None:
        st.problems.append(
            f"drill {drill} restored a snapshot onto {st.standby} after its last "
            f"replication: its index is no longer the replicated one (run `drctl replicate "
            f"run --node {st.standby}`)"
        )
        return
    st.position, st.index_time = rep.position, rep.source_time
    st.index_age_s = max(0.0, (now - rep.source_time).total_seconds())
    changed = primary_changed(primary, rep.position, st.primary_position)
    st.lag_s = copy_lag(rep.source_time, changed, now)
    if changed is None:
        st.notes.append(
            f"primary {st.primary} did not answer: its index is assumed to have "
            "changed since the standby's copy (lag = index age)"
        )


def _streaming_index(plan: Plan, st: StandbyStatus) -> None:
    def password(node) -> str | None:
        return node.index_password.resolve() if node.index_password else None

    try:
        lag = pg_replica.measure(
            PgTarget.parse(plan.primary_node.index),
            password(plan.primary_node),
            PgTarget.parse(plan.standby_node.index),
            password(plan.standby_node),
            name=plan.standby,
        )
    except DrctlError as exc:
        st.problems.append(f"streaming replica not measurable: {exc}")
        return
    st.position, st.lag_s, st.lag_bytes = lag.replay_lsn, lag.lag_s, lag.lag_bytes
    st.index_time = lag.measured_at - timedelta(seconds=lag.lag_s)
    st.index_age_s = lag.lag_s
    st.notes.append(f"lag measured live ({lag.method}, {lag.source})")


def _newer(primary: PacsNode, st: StandbyStatus, snap_seq: int | None) -> None:
    """Does the standby's index reach past its images (list content changes the
    snapshot's paired index copy did not have)?"""
    if st.image_time is None or st.index_time is None:
        return
    position = int(st.position) if st.position and st.position.isdigit() else None
    if st.mode == "streaming" and st.lag_bytes == 0:
        position = st.primary_position  # a caught-up replica holds what the primary holds
    if position is None or snap_seq is None:
        st.index_newer_than_images = st.index_time > st.image_time
    elif position <= snap_seq:
        st.index_newer_than_images = False
    else:
        try:
            st.index_newer_than_images = primary.changed_between(
                snap_seq, position, timeout=PRIMARY_POSITION_TIMEOUT_S
            )
        except DrctlError:
            st.index_newer_than_images = True  # later position, content unknown
    if st.index_newer_than_images:
        st.notes.append(
            f"index newer than images: the standby lists studies that snapshot "
            f"{st.image_snapshot[:8]} does not hold (it cannot serve them)"
        )


def _judge(st: StandbyStatus) -> None:
    if st.last_run is None:
        st.problems.append("never replicated")
    elif st.last_run["state"] in ("failed", "interrupted"):
        st.problems.append(
            f"last replication (run {st.last_run['run_id']}) "
            f"{st.last_run['state']}: {st.last_run['reason']}"
        )
    if st.image_time is None:
        st.problems.append(
            f"no complete storage snapshot of {st.primary}: the standby has no images to be given"
        )
    if st.rpo_s is None:
        if st.last_run is not None:
            st.problems.append("effective RPO unknown")
    elif st.rpo_s > st.max_rpo_s:
        st.problems.append(
            f"effective RPO {format_duration(st.rpo_s)} exceeds drill.max_rpo "
            f"{format_duration(st.max_rpo_s)} (index {format_duration(st.lag_s)} behind, "
            f"images {format_duration(st.image_age_s)} old)"
        )
