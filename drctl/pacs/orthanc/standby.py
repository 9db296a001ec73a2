"""Restoring a snapshot onto a configured Orthanc standby, for restore drills.

The storage tree is restored into a fresh folder beside the standby's storage
(``.<name>.drctl-new``, same filesystem, so the swap is a rename) and the index copy is
staged, while the standby keeps running on its old data. Only then is the standby stopped
and swapped: storage folder renamed aside (``.<name>.drctl-old``), the new one renamed into
place, the index installed (a SQLite file, or a PostgreSQL database swapped by name). A
restore that fails never touches the standby; a standby that does not come back on the
restored data is rolled back to its previous data (and restarted if it was running). The
previous data is removed only once the standby answered on the new data.

A crash between the two renames leaves ``.drctl-old`` without a live folder: the next drill
renames it back before doing anything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drctl.errors import DrctlError, JobFailed, UsageError
from drctl.indexdb import sqlite_index
from drctl.indexdb.postgres_index import PgTarget
from drctl.net import port_open
from drctl.pacs.restored import RestoreOptions

if TYPE_CHECKING:
    from drctl.pacs.orthanc.adapter import OrthancNode

log = logging.getLogger(__name__)

SIDE = ("", "-wal", "-shm")


class OrthancStandbyRestore:
    """A drill's restore onto standby ``node`` (see the module doc)."""

    role = "standby"

    def __init__(self, node: OrthancNode, options: RestoreOptions):
        settings = node.node
        if not (settings.start and settings.stop):
            raise UsageError(
                f"node.{node.name}: a standby drill needs its start and stop "
                "commands (drctl stops it to swap in the restored data)"
            )
        self.node = node
        self.name = node.name
        self.options = options
        self.live = Path(settings.storage)
        self.new = self.live.parent / f".{self.live.name}.drctl-new"
        self.old = self.live.parent / f".{self.live.name}.drctl-old"
        self.kind = settings.index_kind
        self.was_running = False
        self.swapped = False
        self.started = False
        self._pg: PgTarget | None = None
        self._pg_password: str | None = None
        if self.kind == "postgresql":
            self._pg = PgTarget.parse(settings.index)
            self._pg_password = (
                settings.index_password.resolve() if settings.index_password else None
            )
        self._recover_interrupted_swap()
        shutil.rmtree(self.new, ignore_errors=True)
        self.new.mkdir(parents=True)
        Path(options.workdir).mkdir(parents=True, exist_ok=True)

    # --- locations -----------------------------------------------------------------------

    @property
    def restore_dir(self) -> Path:
        return self.new

    @property
    def storage_dir(self) -> Path:
        return self.live

    @property
    def index_path(self) -> Path | None:
        return self.node.index_file

    def index_download(self, kind: str) -> Path:
        if kind != self.kind:
            raise JobFailed(
                f"the index copy is {kind} but standby {self.name} has a {self.kind} index"
            )
        return Path(self.options.workdir) / ("index.download" if kind == "sqlite" else "index.dump")

    def _old_index(self, suffix: str = "") -> Path:
        assert self.index_path is not None
        return self.index_path.with_name(f".{self.index_path.name}.drctl-old{suffix}")

    def _index_inside_storage(self) -> bool:
        index = self.index_path
        return index is not None and index.resolve().is_relative_to(self.live.resolve())

    @property
    def _databases(self) -> tuple[str, str, str]:
        assert self._pg is not None
        live = self._pg.database
        return live, f"{live}_drctl_new", f"{live}_drctl_old"

    def restore_paths(self, paths: list[str]) -> list[str]:
        """A standby is always restored in full; nothing to add."""
        return list(paths)

    # --- install -------------------------------------------------------------------------

    def install(self) -> None:
        """Stage the index (standby still running), stop the standby, swap storage and
        index. Raises JobFailed / IndexCorrupt; before the stop nothing was changed."""
        download = self.index_download(self.kind)
        if self.kind == "sqlite":
            sqlite_index.check_integrity(download)
        else:
            self._stage_database(download)
        host, port = self.node.node.host, self.node.node.port
        self.was_running = port_open(host, port, timeout=1.0)
        self.node.stop()
        self.swapped = True  # from here on, close() rolls back unless the node started
        if self.live.exists():
            os.rename(self.live, self.old)
        os.rename(self.new, self.live)
        if self.kind == "sqlite":
            self._swap_sqlite(download)
        else:
            self._swap_database()

    def _stage_database(self, dump: Path) -> None:
        from drctl.indexdb import pg_databases, postgres_index

        live, new, _ = self._databases
        assert self._pg is not None
        conn = pg_databases.admin_connection(self._pg, self._pg_password)
        try:
            pg_databases.drop(conn, new)
            pg_databases.create(conn, new)
        finally:
            conn.close()
        postgres_index.restore(self._pg.with_database(new), self._pg_password, dump)

    def _swap_database(self) -> None:
        from drctl.indexdb import pg_databases

        live, new, old = self._databases
        assert self._pg is not None
        conn = pg_databases.admin_connection(self._pg, self._pg_password)
        try:
            pg_databases.drop(conn, old)
            pg_databases.swap(conn, live=live, new=new, prev=old)
        finally:
            conn.close()

    def _swap_sqlite(self, download: Path) -> None:
        target = self.index_path
        assert target is not None
        if not self._index_inside_storage():
            for suffix in SIDE:
                source = Path(f"{target}{suffix}")
                if source.exists():
                    os.rename(source, self._old_index(suffix))
        sqlite_index.install(download, target)

    # --- start and close -------------------------------------------------------------------

    def start(self) -> float:
        started = time.monotonic()
        self.node.start()
        self.started = True
        return time.monotonic() - started

    def peer(self) -> Any:
        return self.node.peer()

    def dicom_client(self) -> Any:
        return self.node.dicom_client()

    def version(self) -> str | None:
        try:
            return str(self.node.rest(timeout=5).system().get("Version"))
        except DrctlError:
            return None

    def describe(self) -> dict:
        settings = self.node.node
        return {
            "kind": "orthanc",
            "role": "standby",
            "node": self.name,
            "aet": settings.aet,
            "host": settings.host,
            "dicom_port": settings.port,
            "index": self.kind,
            "rolled_back": self.swapped and not self.started,
        }

    def close(self) -> None:
        """Keep the restored data if the standby came up on it, else roll back. Never
        raises; problems are logged."""
        try:
            if self.started:
                self._forget_previous()
            elif self.swapped:
                self._roll_back()
            else:
                shutil.rmtree(self.new, ignore_errors=True)
                if self._pg is not None:
                    self._drop(self._databases[1])
        except Exception as exc:  # close must not hide the drill's own outcome
            log.error("standby %s: cleanup after the drill failed: %s", self.name, exc)
        shutil.rmtree(self.options.workdir, ignore_errors=True)

    def _forget_previous(self) -> None:
        shutil.rmtree(self.old, ignore_errors=True)
        if self.kind == "sqlite" and self.index_path is not None:
            for suffix in SIDE:
                self._old_index(suffix).unlink(missing_ok=True)
        elif self._pg is not None:
            self._drop(self._databases[2])

    def _roll_back(self) -> None:
        log.warning("standby %s did not start on the restored data; rolling back", self.name)
        with contextlib.suppress(DrctlError):
            self.node.stop()
        failed = self.live.parent / f".{self.live.name}.drctl-failed"
        shutil.rmtree(failed, ignore_errors=True)
        if self.live.exists():
            os.rename(self.live, failed)
        if self.old.exists():
            os.rename(self.old, self.live)
        shutil.rmtree(failed, ignore_errors=True)
        if self.kind == "sqlite" and not self._index_inside_storage():
            self._restore_old_index()
        elif self._pg is not None:
            self._swap_back_database()
        if self.was_running:
            try:
                self.node.start()
            except DrctlError as exc:
                log.error("standby %s did not start again on its previous data: %s", self.name, exc)

    def _restore_old_index(self) -> None:
        target = self.index_path
        assert target is not None
        if not self._old_index().exists():
            return
        for suffix in SIDE:
            Path(f"{target}{suffix}").unlink(missing_ok=True)
            if self._old_index(suffix).exists():
                os.rename(self._old_index(suffix), f"{target}{suffix}")

    def _swap_back_database(self) -> None:
        from drctl.indexdb import pg_databases

        live, new, old = self._databases
        assert self._pg is not None
        conn = pg_databases.admin_connection(self._pg, self._pg_password)
        try:
            if pg_databases.exists(conn, old):
                pg_databases.drop(conn, new)
                pg_databases.swap(conn, live=live, new=old, prev=new)
                pg_databases.drop(conn, new)
        finally:
            conn.close()

    def _drop(self, database: str) -> None:
        from drctl.indexdb import pg_databases

        assert self._pg is not None
        conn = pg_databases.admin_connection(self._pg, self._pg_password)
        try:
            pg_databases.drop(conn, database)
        finally:
            conn.close()

    def _recover_interrupted_swap(self) -> None:
        """A crash between the two renames of an earlier drill: put the old data back."""
        if self.old.exists() and not self.live.exists():
            log.warning(
                "standby %s: an earlier drill stopped mid-swap; restoring %s", self.name, self.live
            )
            os.rename(self.old, self.live)
        elif self.old.exists():
            shutil.rmtree(self.old, ignore_errors=True)
