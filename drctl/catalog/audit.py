"""The audit trail: every action appended as a hash chain.

Each row's hash covers its content and the previous row's hash, so an edited or deleted
row breaks the chain at that point. The head (last id and hash) is also written into the
repository after each run (an anchor outside the catalog), so a truncated tail is
detectable too: the anchor names a row the catalog no longer has.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from drctl.catalog.models import AuditEvent

GENESIS = "0" * 64


def current_user() -> str:
    """The OS user running drctl."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def event_hash(prev_hash: str, *, at: datetime, user: str, host: str, command: str,
               target: str | None, result: str, run_id: int | None) -> str:
    body = json.dumps({"prev": prev_hash, "at": at.astimezone(UTC).isoformat(), "user": user,
                       "host": host, "command": command, "target": target, "result": result,
                       "run_id": run_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def append(session: Session, command: str, *, target: str | None, result: str,
           run_id: int | None = None) -> AuditEvent:
    """Append one event (inside the caller's transaction). Concurrent appenders on
    PostgreSQL serialize on the newest row's lock."""
    last = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)
                           .with_for_update()).first()
    prev = last.hash if last else GENESIS
    at = datetime.now(UTC).replace(microsecond=0)
    user, host = current_user(), socket.gethostname()
    row = AuditEvent(at=at, user=user, host=host, command=command[:2000], target=target,
                     result=result, run_id=run_id, prev_hash=prev,
                     hash=event_hash(prev, at=at, user=user, host=host, command=command[:2000],
                                     target=target, result=result, run_id=run_id))
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    head_id: int | None
    head_hash: str | None
    problems: list[str]

    def to_json(self) -> dict:
        return {"ok": self.ok, "events": self.events, "head_id": self.head_id,
                "head_hash": self.head_hash, "problems": self.problems}


def head(session: Session) -> tuple[int, str] | None:
    """(id, hash) of the newest event, or None for an empty trail."""
    row = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
    return (row.id, row.hash) if row else None


ANCHOR_PREFIX_LEN = 16


def anchor_tag(event_id: int, event_hash: str) -> str:
    """The restic tag that anchors the chain head outside the catalog."""
    return f"audit:{event_id}.{event_hash[:ANCHOR_PREFIX_LEN]}"


def parse_anchor(tag: str) -> tuple[int, str] | None:
    if not tag.startswith("audit:"):
        return None
    ident, _, prefix = tag[6:].partition(".")
    return (int(ident), prefix) if ident.isdigit() and prefix else None


def verify_chain(session: Session, anchors: list[tuple[int, str]] = ()) -> ChainReport:
    """Walk the chain, then check every anchor (id, hash prefix) written to the repository:
    a row an anchor names must still exist with that hash, so an edited, deleted or
    truncated tail is detected even after new events were appended."""
    problems: list[str] = []
    prev = GENESIS
    last_id, count, last_hash = None, 0, None
    for row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        count += 1
        if last_id is not None and row.id != last_id + 1:
            problems.append(f"events {last_id + 1}..{row.id - 1} are missing (deleted rows)")
        if row.prev_hash != prev:
            problems.append(f"event {row.id}: does not follow event {last_id} (chain broken)")
        expected = event_hash(row.prev_hash, at=row.at, user=row.user, host=row.host,
                              command=row.command, target=row.target, result=row.result,
                              run_id=row.run_id)
        if expected != row.hash:
            problems.append(f"event {row.id}: content does not match its hash (edited)")
        prev, last_id, last_hash = row.hash, row.id, row.hash
    for anchor_id, prefix in sorted(set(anchors)):
        row = session.get(AuditEvent, anchor_id)
        if row is None:
            problems.append(f"event {anchor_id}, anchored in the repository, is missing from "
                            "the catalog (deleted or truncated)")
        elif not row.hash.startswith(prefix):
            problems.append(f"event {anchor_id} differs from its anchor in the repository "
                            "(rewritten)")
    return ChainReport(not problems, count, last_id, last_hash, problems)
