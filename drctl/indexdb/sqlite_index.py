"""Consistent copies of a SQLite index database.

Orthanc 1.10 holds its SQLite index with ``locking_mode=EXCLUSIVE``: another process cannot
read it while Orthanc runs. A copy is therefore taken from a stopped node (``stop-start``)
or from a frozen filesystem snapshot (``command``): the database file and its WAL
(``-wal``, ``-shm``) are copied together, the WAL is folded into the copy, and the result
must pass ``PRAGMA integrity_check`` before anything uses it.

Installing a copy at a standby is atomic: a temporary file beside the target, integrity
check, fsync, rename.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from drctl.errors import JobFailed

SIDE_FILES = ("-wal", "-shm", "-journal")


class IndexCorrupt(JobFailed):
    """An index copy failed its integrity check; it is not used."""


def copy_files(source: Path, dest: Path) -> None:
    """Copy the database file and its WAL side files as they are (the writer must be
    stopped or the folder frozen); stale side files at ``dest`` are removed first."""
    for suffix in ("", *SIDE_FILES):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    if not source.is_file():
        raise JobFailed(f"index database {source} does not exist")
    shutil.copyfile(source, dest)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{source}{suffix}")
        if side.is_file():
            shutil.copyfile(side, f"{dest}{suffix}")


def copy_database(source: Path, dest: Path) -> int:
    """Copy ``source`` with its WAL side files to ``dest`` and fold the WAL in, leaving one
    self-contained file. Returns its size. ``source`` must not be written meanwhile."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    copy_files(source, tmp)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.DatabaseError as exc:
        raise IndexCorrupt(f"index copy of {source} cannot be opened: {exc}") from None
    finally:
        conn.close()
    for suffix in SIDE_FILES:
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    check_integrity(tmp)
    _fsync(tmp)
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)
    return dest.stat().st_size


def check_integrity(path: Path) -> None:
    """Raise :class:`IndexCorrupt` unless ``PRAGMA integrity_check`` says ok."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise IndexCorrupt(f"index copy {path} is not a readable SQLite database: {exc}") from None
    result = "; ".join(str(r[0]) for r in rows[:5])
    if result != "ok":
        raise IndexCorrupt(f"index copy {path} failed its integrity check: {result}")


def staged_path(target: Path) -> Path:
    """Where a copy waits beside ``target`` before it is renamed into place."""
    return target.with_name(f".{target.name}.drctl-new")


def prepare_install(copy: Path, target: Path) -> Path:
    """Copy ``copy`` to a temporary file beside ``target`` (same filesystem, so the final
    rename is atomic), integrity-check and fsync it. The target's node may still run.
    Returns the staged file; raises :class:`IndexCorrupt`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staged_path(target)
    for suffix in ("", *SIDE_FILES):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, tmp)
    check_integrity(tmp)
    _fsync(tmp)
    return tmp


def swap_in(staged: Path, target: Path) -> None:
    """Rename ``staged`` over ``target`` (the target's node must be stopped). The old
    database's WAL is folded into it first and its side files removed only then, so a
    crash at any point leaves either the complete old index or the complete new one."""
    if target.exists():
        # Fold the old database's WAL into it first: its side files can then go without
        # losing anything, and no stale WAL is ever replayed onto the new file.
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.DatabaseError:
            pass  # a damaged old index is being replaced anyway
        finally:
            conn.close()
    for suffix in SIDE_FILES:
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)
    _fsync_dir(target.parent)


def install(copy: Path, target: Path) -> None:
    """Put ``copy`` in place of ``target`` atomically (the target's node must be stopped):
    temp file beside the target, integrity check, fsync, rename."""
    swap_in(prepare_install(copy, target), target)


def _fsync(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
