"""Run records: every action is a run with a state, a heartbeat and a reason.

    with start_run(catalog, "backup", site=..., node=...) as run:
        ...
        run.details["files_new"] = 12
        run.finish("warning", "2 studies vanished")   # optional; default "succeeded"

States: running -> succeeded | warning | failed | interrupted. A DrctlError leaving the
block fails the run with its message; SIGINT/SIGTERM (Interrupted, KeyboardInterrupt)
records ``interrupted``. A heartbeat thread keeps ``heartbeat_at`` fresh; a run whose
heartbeat stopped (the process was killed, its host died) is marked ``interrupted`` by
:func:`reap_stale`, so nothing stays ``running`` after its process is gone. A PID check
only helps on the same host; the heartbeat works across hosts.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from drctl.catalog import audit
from drctl.catalog.audit import current_user
from drctl.catalog.db import Catalog
from drctl.catalog.models import Run
from drctl.errors import CatalogUnavailable, DrctlError, Interrupted
from drctl.execute import pid_alive

log = logging.getLogger(__name__)

FINAL_STATES = ("succeeded", "warning", "failed", "interrupted")


def run_outcome(run: Run) -> dict:
    """How a run went, the keys every run record shares (``drctl status``, the report and
    ``drctl scheduler status``): state, reason, trigger, start, end and duration."""
    ended = run.ended_at
    return {
        "state": run.state,
        "reason": run.reason,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "ended_at": ended.isoformat() if ended else None,
        "duration_s": round((ended - run.started_at).total_seconds(), 3) if ended else None,
    }


def command_line(kind: str) -> str:
    """What was run: drctl's own argv (it never holds a secret), or the run kind."""
    argv = sys.argv[1:] if sys.argv and os.path.basename(sys.argv[0]).startswith("drctl") else []
    return "drctl " + " ".join(argv) if argv else kind


@dataclass
class RunHandle:
    """The live run of an action. ``details`` is saved with the final state."""

    catalog: Catalog
    id: int
    kind: str
    started_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    state: str = "running"
    reason: str | None = None
    _finished: bool = False

    def finish(self, state: str, reason: str | None = None) -> None:
        """Set the final state (written when the ``with`` block ends)."""
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")
        self.state, self.reason, self._finished = state, reason, True

    def escalate(self, state: str, reason: str) -> None:
        """Raise the state to ``state`` if it is worse than the current one, appending the
        reason (succeeded < warning < failed)."""
        order = {"running": 0, "succeeded": 0, "warning": 1, "failed": 2, "interrupted": 3}
        if order[state] >= order.get(self.state, 0):
            self.state = state
        self.reason = f"{self.reason}; {reason}" if self.reason else reason
        self._finished = True

    def save_details(self) -> None:
        """Write the current details now (long runs show progress in the catalog)."""
        with self.catalog.session() as s:
            s.execute(update(Run).where(Run.id == self.id).values(details=dict(self.details)))


class _Heartbeat(threading.Thread):
    def __init__(self, catalog: Catalog, run_id: int, interval: float):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.catalog, self.run_id, self.interval = catalog, run_id, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with self.catalog.session() as s:
                    s.execute(
                        update(Run)
                        .where(Run.id == self.run_id, Run.state == "running")
                        .values(heartbeat_at=datetime.now(UTC))
                    )
            except Exception as exc:  # a flaky catalog must not kill the action
                log.warning("heartbeat of run %d not written: %s", self.run_id, exc)


class start_run:  # noqa: N801 - used as a context manager, reads like a verb
    """Context manager that records a run from start to final state."""

    def __init__(
        self,
        catalog: Catalog,
        kind: str,
        *,
        site: str,
        node: str | None = None,
        repository: str | None = None,
        trigger: str = "cli",
        heartbeat: float = 10.0,
        details: dict | None = None,
    ):
        self.catalog = catalog
        self.kind, self.site, self.node, self.repository = kind, site, node, repository
        self.trigger, self.heartbeat = trigger, heartbeat
        self.initial = dict(details or {})
        self.handle: RunHandle | None = None
        self._beat: _Heartbeat | None = None

    def __enter__(self) -> RunHandle:
        now = datetime.now(UTC)
        with self.catalog.session() as s:
            row = Run(
                kind=self.kind,
                site=self.site,
                node=self.node,
                repository=self.repository,
                state="running",
                started_at=now,
                heartbeat_at=now,
                host=socket.gethostname(),
                pid=os.getpid(),
                user=current_user(),
                trigger=self.trigger,
                details=self.initial,
            )
            s.add(row)
            s.flush()
            run_id = row.id
        self.handle = RunHandle(self.catalog, run_id, self.kind, now, dict(self.initial))
        self._beat = _Heartbeat(self.catalog, run_id, self.heartbeat)
        self._beat.start()
        return self.handle

    def __exit__(self, exc_type, exc, tb) -> bool:
        handle = self.handle
        assert handle is not None and self._beat is not None
        self._beat.stopped.set()
        if exc is not None:
            if isinstance(exc, Interrupted | KeyboardInterrupt):
                handle.state, handle.reason = "interrupted", str(exc) or "interrupted by a signal"
            elif isinstance(exc, DrctlError):
                handle.state, handle.reason = "failed", str(exc)
            else:
                handle.state = "failed"
                handle.reason = f"internal error: {type(exc).__name__}: {exc}"
        elif not handle._finished:
            handle.state = "succeeded"
        try:
            with self.catalog.session() as s:
                s.execute(
                    update(Run)
                    .where(Run.id == handle.id)
                    .values(
                        state=handle.state,
                        reason=handle.reason,
                        ended_at=datetime.now(UTC),
                        heartbeat_at=datetime.now(UTC),
                        details=handle.details,
                    )
                )
                target = "/".join(x for x in (self.repository, self.node) if x) or None
                audit.append(
                    s, command_line(self.kind), target=target, result=handle.state, run_id=handle.id
                )
        except CatalogUnavailable:
            if exc is None:
                raise
            log.error("run %d could not be recorded as %s", handle.id, handle.state)
        return False


def reap_stale(catalog: Catalog, *, stale_after: float) -> list[int]:
    """Mark ``interrupted`` every run still ``running`` whose heartbeat is older than
    ``stale_after`` seconds, or whose process on this host is gone. Returns their IDs."""
    now = datetime.now(UTC)
    host = socket.gethostname()
    reaped = []
    with catalog.session() as s:
        rows = s.execute(
            select(Run.id, Run.host, Run.pid, Run.heartbeat_at).where(Run.state == "running")
        ).all()
        for run_id, run_host, pid, beat in rows:
            silent = now - beat > timedelta(seconds=stale_after)
            dead_here = run_host == host and not pid_alive(pid)
            if silent or dead_here:
                reason = (
                    "its process is gone"
                    if dead_here
                    else f"no heartbeat for {int((now - beat).total_seconds())}s"
                )
                s.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.state == "running")
                    .values(state="interrupted", ended_at=now, reason=f"interrupted: {reason}")
                )
                reaped.append(run_id)
    for run_id in reaped:
        log.warning("run %d marked interrupted (its process stopped without finishing)", run_id)
    return reaped
