"""The phases of a drill (check, restore, start, verify) with their durations, and the
RTO and RPO they measure.

RTO is the time from the drill's start until every check is done: the time it took to
get a verified, answering node from the repository (the repository check included, so it
errs on the long side). A partial drill restores only some files; its RTO is projected to
the whole archive at the restore throughput it measured, and labelled so.

RPO is how much recent data a recovery from this snapshot would lose: the age of the
restored point (``pair_time``, the older of the index copy and the storage snapshot)
against the newest data change on the primary when it answers, else against now.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drctl.drill.findings import RPO_EXCEEDED, RTO_EXCEEDED, Finding

PHASES = ("check", "restore", "start", "verify")


@dataclass
class Phase:
    name: str
    started_at: datetime
    duration_s: float | None = None
    ok: bool | None = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "started_at": self.started_at.isoformat(),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "ok": self.ok,
            **self.detail,
        }


class PhaseClock:
    """Times a drill's phases from one start instant (monotonic clock)."""

    def __init__(self) -> None:
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self.phases: dict[str, Phase] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[dict]:
        """Time the block as phase ``name``; yields its detail dict. The phase is ``ok``
        unless the block raised (the exception goes on)."""
        record = Phase(name, datetime.now(UTC))
        self.phases[name] = record
        started = time.monotonic()
        try:
            yield record.detail
            record.ok = True if record.ok is None else record.ok
        except BaseException:
            record.ok = False
            raise
        finally:
            record.duration_s = time.monotonic() - started

    def fail(self, name: str) -> None:
        """Mark phase ``name`` as not ok although its block finished (a finding)."""
        if name in self.phases:
            self.phases[name].ok = False

    def duration(self, name: str) -> float:
        phase = self.phases.get(name)
        return (phase.duration_s or 0.0) if phase else 0.0

    def to_json(self) -> dict:
        return {name: phase.to_json() for name, phase in self.phases.items()}


def projected_rto(
    measured_s: float, restore_s: float, restored_bytes: int, archive_bytes: int
) -> float | None:
    """The RTO of a full restore, from a partial drill: the measured time with the
    restore phase replaced by the whole archive at the measured throughput. None when
    nothing was restored to measure."""
    if restored_bytes <= 0 or restore_s <= 0:
        return None
    throughput = restored_bytes / restore_s
    return measured_s - restore_s + archive_bytes / throughput


def rpo(pair_time: datetime, newest_change: datetime | None, now: datetime) -> tuple[float, str]:
    """(seconds, basis): the restored point's age against the primary's newest data
    change (``basis`` "primary", never negative: nothing newer means nothing lost), or
    against ``now`` when the primary did not answer (``basis`` "now")."""
    if newest_change is not None:
        return max(0.0, (newest_change - pair_time).total_seconds()), "primary"
    return max(0.0, (now - pair_time).total_seconds()), "now"


def target_findings(
    *,
    rto_s: float | None,
    rto_projected: bool,
    max_rto: float,
    rpo_s: float | None,
    rpo_basis: str,
    max_rpo: float,
) -> list[Finding]:
    """``rto_exceeded`` / ``rpo_exceeded`` against ``drill.max_rto`` / ``drill.max_rpo``."""
    found = []
    if rto_s is not None and rto_s > max_rto:
        label = "projected RTO" if rto_projected else "RTO"
        found.append(
            Finding(
                RTO_EXCEEDED,
                None,
                f"{label} {rto_s:.0f}s exceeds drill.max_rto {max_rto:.0f}s",
                "targets",
            )
        )
    if rpo_s is not None and rpo_s > max_rpo:
        against = (
            "the primary's newest change"
            if rpo_basis == "primary"
            else "now (the primary did not answer)"
        )
        found.append(
            Finding(
                RPO_EXCEEDED,
                None,
                f"RPO {rpo_s:.0f}s (against {against}) exceeds drill.max_rpo {max_rpo:.0f}s",
                "targets",
            )
        )
    return found
