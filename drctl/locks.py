"""Local inter-process locks (flock) that make drctl's own operations queue.

restic 0.14 has no lock waiting: a backup started while ``check`` holds the exclusive
repository lock fails at once. drctl therefore takes its own lock per repository first:
shared for operations restic runs under a shared lock (backup, restore, dump), exclusive
for those it runs exclusively (check, prune, rebuild-index, unlock). Waiting is bounded by
``timeout``; the holder's description is kept in the lock file for messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from drctl.errors import LockTimeout


def lock_path(lock_dir: Path, kind: str, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return lock_dir / f"{kind}-{digest}.lock"


def _describe() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    exclusive: bool,
    timeout: float,
    what: str,
    poll: float = 0.2,
    on_wait=None,
) -> Iterator[None]:
    """Hold the lock at ``path`` (shared or exclusive) for the ``with`` block.

    Waits up to ``timeout`` seconds (0 = do not wait) and raises :class:`LockTimeout`
    naming ``what`` and the current holder. ``on_wait(holder)`` is called once when the
    lock is busy (for a "queued behind ..." message).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    announced = False
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                if not announced and on_wait is not None:
                    on_wait(holder)
                    announced = True
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{what} is busy" + (f" ({holder})" if holder else ""),
                        hint="another drctl operation is running; try again when it has finished",
                    ) from None
                time.sleep(poll)
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _describe().encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def try_hold(path: Path, *, what: str, holder_note: str = "") -> Iterator[None]:
    """Exclusive lock without waiting; raises :class:`LockTimeout` at once when busy.
    ``holder_note`` (e.g. "run 12") is stored for the next contender's message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise LockTimeout(
                f"{what} is already running" + (f" ({holder})" if holder else ""),
                hint="wait for it to finish; a second one would only collide with it",
            ) from None
        os.ftruncate(fd, 0)
        note = f"{holder_note}, " if holder_note else ""
        os.pwrite(fd, (note + _describe()).encode(), 0)
        yield
    finally:
        os.close(fd)
