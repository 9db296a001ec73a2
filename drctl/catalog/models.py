"""The catalog's tables (SQLAlchemy 2). Migrations live in drctl/catalog/migrations.

What the catalog holds: runs and their states, storage snapshots, index copies, the study
manifest of each snapshot (temporal rows: a row is valid from the snapshot sequence
``first_seq`` up to, not including, ``end_seq``, so a new snapshot writes only what
changed), vanished studies and their acknowledgements, alarms (circuit breakers), drills and
findings, replications, the audit chain, leases and job state for the scheduler.

What it never holds: patient names, plain patient IDs (only keyed hashes), secrets.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: JSON}


RUN_STATES = ("running", "succeeded", "warning", "failed", "interrupted")


class Run(Base):
    """One action: backup, index_copy, replicate, drill, check, prune, restore, ..."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str | None] = mapped_column(String(128), index=True)
    repository: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    user: Mapped[str | None] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(32), default="cli")
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Snapshot(Base):
    """A storage snapshot of a node in a repository (drctl's records are in `records`)."""

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("repository", "snapshot_id"),
        UniqueConstraint("site", "node", "seq"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(128))
    snapshot_id: Mapped[str] = mapped_column(String(64), index=True)
    short_id: Mapped[str] = mapped_column(String(16), index=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime]
    # time of the consistent pair (older of the index copy and the storage snapshot)
    pair_time: Mapped[datetime | None]
    index_copy_id: Mapped[int | None] = mapped_column(ForeignKey("index_copies.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    status: Mapped[str] = mapped_column(String(16), default="complete")  # complete|warning|suspect
    files_new: Mapped[int] = mapped_column(Integer, default=0)
    files_changed: Mapped[int] = mapped_column(Integer, default=0)
    bytes_added: Mapped[int] = mapped_column(BigInteger, default=0)
    total_files: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    studies: Mapped[int | None] = mapped_column(Integer)
    instances: Mapped[int | None] = mapped_column(Integer)
    manifest_record: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None]  # newest passed drill of this snapshot
    verified_drill_id: Mapped[int | None] = mapped_column(Integer)
    forgotten_at: Mapped[datetime | None]


class IndexCopy(Base):
    """A consistent copy of a node's index database stored in the repository."""

    __tablename__ = "index_copies"
    __table_args__ = (UniqueConstraint("repository", "record_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(128))
    record_id: Mapped[str] = mapped_column(String(64))  # restic snapshot of the copy
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # sqlite | postgresql
    method: Mapped[str] = mapped_column(String(16))  # stop-start | command | online
    taken_at: Mapped[datetime]
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    outage_s: Mapped[float | None] = mapped_column(Float)
    change_seq: Mapped[int | None] = mapped_column(BigInteger)
    max_internal_id: Mapped[int | None] = mapped_column(BigInteger)
    studies: Mapped[int | None] = mapped_column(Integer)
    instances: Mapped[int | None] = mapped_column(Integer)
    integrity: Mapped[str] = mapped_column(String(32), default="ok")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))


class ManifestStudy(Base):
    """A study of a node's manifest, valid for snapshot sequences [first_seq, end_seq)."""

    __tablename__ = "manifest_studies"
    __table_args__ = (
        Index("ix_mstudy_node_uid", "site", "node", "study_uid"),
        Index("ix_mstudy_node_seq", "site", "node", "first_seq", "end_seq"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128))
    study_uid: Mapped[str] = mapped_column(String(64))
    first_seq: Mapped[int] = mapped_column(Integer)
    end_seq: Mapped[int | None] = mapped_column(Integer)
    series: Mapped[int] = mapped_column(Integer)
    instances: Mapped[int] = mapped_column(Integer)
    modalities: Mapped[str] = mapped_column(String(128), default="")
    study_date: Mapped[str | None] = mapped_column(String(8))
    patient_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pacs_id: Mapped[str | None] = mapped_column(String(64))


class ManifestInstance(Base):
    """An instance of a node's manifest, valid for [first_seq, end_seq)."""

    __tablename__ = "manifest_instances"
    __table_args__ = (
        Index("ix_minst_node_study", "site", "node", "study_uid"),
        Index("ix_minst_node_seq", "site", "node", "first_seq", "end_seq"),
        Index("ix_minst_node_path", "site", "node", "path"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128))
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_uid: Mapped[str] = mapped_column(String(64))
    sop_class: Mapped[str | None] = mapped_column(String(64))
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))  # relative to the storage area
    size: Mapped[int] = mapped_column(BigInteger)  # stored size
    md5: Mapped[str | None] = mapped_column(String(32))  # of the stored bytes
    digest: Mapped[str | None] = mapped_column(String(64))  # canonical content digest
    compressed: Mapped[bool] = mapped_column(Boolean, default=False)
    internal_id: Mapped[int | None] = mapped_column(BigInteger)
    first_seq: Mapped[int] = mapped_column(Integer)
    end_seq: Mapped[int | None] = mapped_column(Integer)


class Record(Base):
    """One of drctl's own small snapshots in the repository (manifest, index copy,
    verification, report, audit anchor)."""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("repository", "record_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(128))
    record_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str | None] = mapped_column(String(128))
    refers_to: Mapped[str | None] = mapped_column(String(64), index=True)  # a storage snapshot
    time: Mapped[datetime]
    forgotten_at: Mapped[datetime | None]


class Vanished(Base):
    """A study that was in a node's previous snapshot and is gone from the next."""

    __tablename__ = "vanished"
    __table_args__ = (UniqueConstraint("site", "node", "study_uid", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # first snapshot sequence without it
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    detected_at: Mapped[datetime]
    acked_at: Mapped[datetime | None]
    acked_by: Mapped[str | None] = mapped_column(String(128))
    ack_reason: Mapped[str | None] = mapped_column(Text)


class Acknowledgement(Base):
    """An expected deletion acknowledged ahead of (or after) its detection."""

    __tablename__ = "acknowledgements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class Alarm(Base):
    """A circuit breaker (mass deletion, mass modification): prune and replication pause
    while an alarm of the node is open."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    close_reason: Mapped[str | None] = mapped_column(Text)


class Drill(Base):
    __tablename__ = "drills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    site: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(128))  # the primary whose snapshot is drilled
    repository: Mapped[str] = mapped_column(String(128))
    snapshot_id: Mapped[str | None] = mapped_column(String(64), index=True)
    standby: Mapped[str] = mapped_column(String(128))  # "sandbox" or a node name
    scope: Mapped[str] = mapped_column(String(16))  # full | partial
    verdict: Mapped[str] = mapped_column(String(16))  # running | passed | failed
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    studies_expected: Mapped[int] = mapped_column(Integer, default=0)
    studies_verified: Mapped[int] = mapped_column(Integer, default=0)
    instances_sampled: Mapped[int] = mapped_column(Integer, default=0)
    rto_s: Mapped[float | None] = mapped_column(Float)
    rto_projected: Mapped[bool] = mapped_column(Boolean, default=False)
    rpo_s: Mapped[float | None] = mapped_column(Float)
    phases: Mapped[dict] = mapped_column(JSON, default=dict)
    report_path: Mapped[str | None] = mapped_column(Text)
    record_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Finding(Base):
    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    drill_id: Mapped[int | None] = mapped_column(ForeignKey("drills.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    study_uid: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class Replication(Base):
    __tablename__ = "replications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    site: Mapped[str] = mapped_column(String(128))
    standby: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))  # dump | streaming | sqlite
    finished_at: Mapped[datetime]
    source_time: Mapped[datetime | None]  # the point in time the standby's index reflects
    position: Mapped[str | None] = mapped_column(String(64))  # change seq or WAL LSN
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    lag_bytes: Mapped[int | None] = mapped_column(BigInteger)
    lag_s: Mapped[float | None] = mapped_column(Float)
    studies: Mapped[int | None] = mapped_column(Integer)
    index_copy_id: Mapped[int | None] = mapped_column(ForeignKey("index_copies.id"))


class AuditEvent(Base):
    """The audit trail: a hash chain (each row's hash covers the previous hash)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    user: Mapped[str] = mapped_column(String(128))
    host: Mapped[str] = mapped_column(String(255))
    command: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Lease(Base):
    """A named lease with a fencing token: scheduler leadership per agent, job locks."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    info: Mapped[dict] = mapped_column(JSON, default=dict)


class JobState(Base):
    """Last run of a scheduled job (survives daemon restarts)."""

    __tablename__ = "job_state"
    agent: Mapped[str] = mapped_column(String(128), primary_key=True)
    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_fire_at: Mapped[datetime | None]
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    last_state: Mapped[str | None] = mapped_column(String(16))
    last_ended_at: Mapped[datetime | None]
    fires: Mapped[int] = mapped_column(Integer, default=0)


class Setting(Base):
    """Small key/value state (e.g. the rotating check subset position)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
