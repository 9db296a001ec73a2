"""Stopping jobs that run in the daemon's worker threads.

The CLI stops a command on SIGTERM by raising :class:`drctl.errors.Interrupted` in its
main thread; :func:`drctl.execute.run` then stops the child (SIGINT for restic) and the
run is recorded ``interrupted``. The daemon runs jobs in worker threads, which no signal
reaches, so it raises the same kind of exception in them (``PyThreadState_SetAsyncExc``):
the exception surfaces at the thread's next Python instruction, e.g. within a second in
``execute.run``'s wait loop, and follows exactly the path a SIGTERM follows in the CLI.

Only threads inside an action are interrupted (registered by :meth:`RunningJobs.action`),
each at most once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from drctl.errors import Interrupted

log = logging.getLogger(__name__)


class DaemonStopping(Interrupted):
    """Raised in running jobs when the daemon stops (SIGTERM, SIGINT)."""

    def __init__(self, message: str = "interrupted: the scheduler daemon is stopping", **kw):
        super().__init__(message, **kw)


class LeaseLost(Interrupted):
    """This daemon no longer holds its agent's leadership or the job's lease: the job
    must not go on (another daemon may run it now)."""

    def __init__(self, message: str = "interrupted: this daemon lost its scheduler lease", **kw):
        super().__init__(message, **kw)


def interrupt_thread(ident: int, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` in thread ``ident`` at its next Python instruction. Returns
    whether the thread existed."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc_type)
    )
    if done > 1:  # cannot happen for a valid ident; undo to be safe
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        return False
    return done == 1


@dataclass
class RunningJob:
    key: str
    ident: int
    lease: str
    token: int
    started: float
    interrupted: bool = False


class RunningJobs:
    """The firings in progress, and the jobs inside an action right now, by thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, RunningJob] = {}
        self._firings = 0
        self._idle = threading.Condition(self._lock)

    @contextlib.contextmanager
    def firing(self) -> Iterator[None]:
        """Count a firing from its first catalog step to its last (never interrupted
        outside :meth:`action`, but waited for)."""
        with self._lock:
            self._firings += 1
        try:
            yield
        finally:
            with self._lock:
                self._firings -= 1
                self._idle.notify_all()

    @contextlib.contextmanager
    def action(self, key: str, lease: str, token: int) -> Iterator[RunningJob]:
        """Register the calling thread as running ``key`` for the ``with`` block."""
        ident = threading.get_ident()
        job = RunningJob(key, ident, lease, token, time.monotonic())
        with self._lock:
            self._jobs[ident] = job
        try:
            yield job
        finally:
            try:
                self._leave(ident)
            except Interrupted:  # injected just now: leave anyway (it comes only once)
                self._leave(ident)
                raise

    def _leave(self, ident: int) -> None:
        with self._lock:
            self._jobs.pop(ident, None)
            self._idle.notify_all()

    def snapshot(self) -> list[RunningJob]:
        with self._lock:
            return list(self._jobs.values())

    def interrupt(self, exc_type: type[BaseException], keys: set[str] | None = None) -> int:
        """Interrupt the running jobs (those in ``keys``, or all). Returns how many."""
        count = 0
        with self._lock:
            for job in self._jobs.values():
                if job.interrupted or (keys is not None and job.key not in keys):
                    continue
                if interrupt_thread(job.ident, exc_type):
                    job.interrupted = True
                    count += 1
                    log.warning("job %s: stopping it (%s)", job.key, exc_type.__name__)
        return count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no firing is in progress; returns False if some still was after
        ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._jobs or self._firings:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.5))
        return True
