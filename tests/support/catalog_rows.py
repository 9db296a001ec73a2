"""Catalog rows written directly, for tests of what reads the catalog (status, fleet,
reports) without running backups: a site's history at chosen times, including states a
real run rarely reaches on demand (an alarm open for days, a backup failed 8 hours ago).
Tests that need rows produced by real backups and drills use tests/support/drills.py."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from drctl.catalog.db import Catalog
from drctl.catalog.models import Alarm, Drill, Finding, Run, Snapshot, Vanished

NOW = datetime.fromisoformat("2024-06-01T12:00:00+00:00")
_ids = itertools.count(1)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@dataclass
class SiteRows:
    """Writes one site's rows into ``catalog``."""

    catalog: Catalog
    site: str
    repository: str = "offsite"

    def run(
        self,
        kind: str,
        state: str,
        started: datetime,
        *,
        node: str | None = "primary",
        repository: str | None = None,
        reason: str | None = None,
        took: float = 60.0,
    ) -> int:
        with self.catalog.session() as s:
            row = Run(
                kind=kind,
                site=self.site,
                node=node,
                repository=repository or self.repository,
                state=state,
                reason=reason,
                started_at=started,
                ended_at=started + timedelta(seconds=took),
                heartbeat_at=started + timedelta(seconds=took),
                host="test",
                pid=1,
                trigger="cli",
                details={},
            )
            s.add(row)
            s.flush()
            return row.id

    def backup(
        self,
        started: datetime,
        *,
        node: str = "primary",
        state: str = "succeeded",
        studies: int = 100,
        total: int = 10 * 2**30,
        added: int = 2**28,
        status: str = "complete",
        reason: str | None = None,
    ) -> int:
        """A backup run and, unless it failed, its snapshot."""
        run_id = self.run("backup", state, started, node=node, reason=reason)
        if state in ("failed", "interrupted"):
            return run_id
        n = next(_ids)
        with self.catalog.session() as s:
            s.add(
                Snapshot(
                    repository=self.repository,
                    snapshot_id=f"{n:08x}" * 8,
                    short_id=f"{n:08x}",
                    site=self.site,
                    node=node,
                    seq=n,
                    time=started + timedelta(seconds=30),
                    pair_time=started + timedelta(seconds=5),
                    run_id=run_id,
                    status=status,
                    files_new=10,
                    bytes_added=added,
                    total_files=1000,
                    total_bytes=total,
                    studies=studies,
                    instances=studies * 20,
                )
            )
        return run_id

    def drill(
        self,
        started: datetime,
        *,
        node: str = "primary",
        verdict: str = "passed",
        rto_s: float = 1800.0,
        rpo_s: float = 600.0,
        findings: list[tuple[str, str | None, str]] = (),
        targets: tuple[float, float] | None = None,
        projected: bool = False,
    ) -> int:
        """A drill (its run, row and findings); ``targets`` = (max_rpo, max_rto) it was
        judged by, recorded like a real drill's report."""
        state = "succeeded" if verdict == "passed" else "failed"
        reason = None if verdict == "passed" else f"{len(findings)} finding(s)"
        run_id = self.run("drill", state, started, node=node, reason=reason, took=rto_s)
        details = {}
        if targets:
            details = {"report": {"max_rpo": targets[0], "max_rto": targets[1], "reason": reason}}
        with self.catalog.session() as s:
            row = Drill(
                run_id=run_id,
                site=self.site,
                node=node,
                repository=self.repository,
                snapshot_id="ab" * 32,
                standby="sandbox",
                scope="full",
                verdict=verdict,
                started_at=started,
                ended_at=started + timedelta(seconds=rto_s),
                studies_expected=100,
                studies_verified=100 - len(findings),
                instances_sampled=50,
                rto_s=rto_s,
                rto_projected=projected,
                rpo_s=rpo_s,
                phases={},
                details=details,
            )
            s.add(row)
            s.flush()
            for kind, uid, detail in findings:
                s.add(
                    Finding(
                        run_id=run_id,
                        drill_id=row.id,
                        kind=kind,
                        study_uid=uid,
                        detail=detail,
                        at=started,
                    )
                )
            return row.id

    def alarm(
        self, opened: datetime, *, node: str = "primary", kind: str = "mass_deletion"
    ) -> None:
        with self.catalog.session() as s:
            s.add(
                Alarm(
                    site=self.site,
                    node=node,
                    kind=kind,
                    detail="12 of 100 studies vanished since the previous snapshot",
                    opened_at=opened,
                )
            )

    def vanished(self, uids: list[str], *, node: str = "primary", acked: bool = False) -> None:
        with self.catalog.session() as s:
            for i, uid in enumerate(uids):
                s.add(
                    Vanished(
                        site=self.site,
                        node=node,
                        study_uid=uid,
                        seq=1000 + i,
                        detected_at=NOW - timedelta(hours=1),
                        acked_at=NOW if acked else None,
                        acked_by="admin" if acked else None,
                    )
                )
