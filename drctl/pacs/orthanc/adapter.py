"""The Orthanc PACS adapter (``kind = "orthanc"``): storage area, index (SQLite or
PostgreSQL), REST API, DICOM endpoint, start/stop commands.

Consistent index copies (architecture.md, consistency order: index first, then storage):

- SQLite, ``stop-start``: stop the node, copy ``index`` with its WAL, start it, wait for
  C-ECHO; the outage (stop to first C-ECHO) is measured. The WAL is folded in and the copy
  integrity-checked after the node is back, to keep the outage short.
- SQLite, ``command``: a configured filesystem-snapshot command prints the path of a frozen
  copy of the index folder; the copy is taken from there with no outage.
- PostgreSQL, ``online``: ``pg_dump -Fc`` on an exported snapshot while the node keeps
  accepting C-STORE; the inventory is read inside the same snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drctl import execute
from drctl.config import Controller, Node
from drctl.errors import JobFailed, NodeUnreachable, UsageError
from drctl.indexdb import postgres_index, sqlite_index
from drctl.net import port_open
from drctl.pacs.base import IndexCopy
from drctl.pacs.orthanc.inventory import PostgresInventory, SqliteInventory
from drctl.pacs.orthanc.rest import OrthancRest

log = logging.getLogger(__name__)

INDEX_SIDE_FILES = ("-wal", "-shm", "-journal")
CHANGES_PAGE = 500


def decompress_attachment(data: bytes) -> bytes:
    """Orthanc's zlib attachments: 8 bytes of uncompressed size, then a zlib stream."""
    return zlib.decompress(data[8:])


class OrthancNode:
    """One configured Orthanc node."""

    kind = "orthanc"

    def __init__(self, name: str, node: Node, controller: Controller):
        self.name = name
        self.node = node
        self.controller = controller
        self._peer = None

    # --- locations -----------------------------------------------------------------------

    @property
    def storage_dir(self) -> Path:
        return Path(self.node.storage)

    @property
    def index_file(self) -> Path | None:
        return self.node.index_path

    def storage_excludes(self) -> list[str]:
        """Absolute paths of live index files inside the storage area (Orthanc's default
        layout keeps ``index`` there); restic must not snapshot them."""
        index = self.index_file
        if index is None:
            return []
        try:
            index.resolve().relative_to(self.storage_dir.resolve())
        except ValueError:
            return []
        base = str(index.resolve())
        return [base, *(base + s for s in INDEX_SIDE_FILES)]

    def rest(self, timeout: float | None = None) -> OrthancRest:
        url = self.node.rest or f"http://{self.node.host}:8042"
        password = self.node.rest_password.resolve() if self.node.rest_password else None
        return OrthancRest(url, username=self.node.rest_username, password=password,
                           timeout=timeout or self.controller.timeouts.dicom)

    def peer(self):
        """The node as a DICOM peer; TLS key references are resolved on first use, once
        per node object (a ``command:`` reference runs a process)."""
        if self._peer is None:
            self._peer = self._make_peer()
        return self._peer

    def _make_peer(self):
        from drctl.dicom.peers import Peer, TlsSettings

        tls = None
        if self.node.tls is not None:
            t = self.node.tls
            key_file = t.key.path if t.key else None
            key_data = t.key.resolve() if t.key and key_file is None else None
            tls = TlsSettings(ca_file=str(t.ca), cert_file=str(t.cert) if t.cert else None,
                              key_file=key_file, key_data=key_data,
                              key_password=t.key_password.resolve() if t.key_password else None)
        return Peer(self.node.aet, self.node.host, self.node.port, tls=tls)

    def dicom_client(self):
        from drctl.dicom.client import DicomClient

        return DicomClient(self.controller.aet, timeout=self.controller.timeouts.dicom)

    def echo(self) -> float:
        """C-ECHO round trip in seconds; raises a DicomError subclass."""
        return self.dicom_client().echo(self.peer())

    # --- process control -------------------------------------------------------------------

    def _command(self, argv: tuple[str, ...] | None, what: str) -> str:
        if not argv:
            raise UsageError(f"node.{self.name}.{what} is not configured")
        result = execute.run(list(argv), timeout=self.controller.timeouts.command)
        if result.returncode != 0:
            raise JobFailed(f"node {self.name}: {what} command exited {result.returncode}: "
                            f"{result.stderr_text[-300:] or 'no output'}")
        return result.stdout

    def stop(self) -> None:
        """Run the node's stop command and wait until its DICOM port is closed."""
        self._command(self.node.stop, "stop")
        deadline = time.monotonic() + self.controller.timeouts.node_start
        while port_open(self.node.host, self.node.port, timeout=0.5):
            if time.monotonic() > deadline:
                raise JobFailed(f"node {self.name} still answers after its stop command")
            time.sleep(0.1)

    def start(self) -> None:
        """Run the node's start command and wait until it answers C-ECHO."""
        self._command(self.node.start, "start")
        self.wait_ready(self.controller.timeouts.node_start)

    def wait_ready(self, timeout: float) -> float:
        """Wait until C-ECHO succeeds; returns the seconds waited. Raises NodeUnreachable."""
        from drctl.errors import DicomError

        start = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - start < timeout:
            if port_open(self.node.host, self.node.port, timeout=0.5):
                try:
                    self.echo()
                    return time.monotonic() - start
                except DicomError as exc:
                    last = exc
            time.sleep(0.2)
        raise NodeUnreachable(f"node {self.name} ({self.node.aet}@{self.node.host}:"
                              f"{self.node.port}) did not answer C-ECHO within {timeout:.0f}s"
                              + (f": {last}" if last else ""))

    # --- index copies ------------------------------------------------------------------------

    def copy_index(self, staging: Path, read: Callable[[Any], Any] | None = None) -> IndexCopy:
        """A consistent index copy staged under ``staging`` (a fixed folder per node, so the
        copy has a fixed path); ``read(inventory)`` runs on exactly that point in time."""
        staging.mkdir(parents=True, exist_ok=True)
        method = self.node.index_copy_method
        if self.node.index_kind == "postgresql":
            return self._copy_postgres(staging, read)
        if method == "stop-start":
            return self._copy_sqlite_stop_start(staging, read)
        if method == "command":
            return self._copy_sqlite_command(staging, read)
        raise UsageError(f"node.{self.name}.index_copy: {method!r} does not apply to a SQLite index")

    def _finish_sqlite(self, raw: Path, staging: Path, method: str, taken: datetime,
                       outage: float | None, read) -> IndexCopy:
        dest = staging / "index.sqlite"
        size = sqlite_index.copy_database(raw, dest)  # folds WAL, integrity check
        for suffix in ("", "-wal", "-shm"):
            Path(f"{raw}{suffix}").unlink(missing_ok=True)
        with SqliteInventory(dest) as inventory:
            seq = inventory.last_change_seq()
            result = read(inventory) if read else None
        return IndexCopy(dest, "sqlite", method, taken, size, outage, seq, "ok", result)

    def _copy_sqlite_stop_start(self, staging: Path, read) -> IndexCopy:
        index = self.index_file
        assert index is not None
        raw = staging / "index.raw"
        started = time.monotonic()
        with self._start_guard():
            self.stop()
            taken = datetime.now(UTC)
            try:
                sqlite_index.copy_files(index, raw)
            finally:
                self.start()  # the node comes back even when the copy failed
        outage = time.monotonic() - started
        log.info("node %s: index copied with a %.1fs outage", self.name, outage)
        return self._finish_sqlite(raw, staging, "stop-start", taken, outage, read)

    @contextlib.contextmanager
    def _start_guard(self) -> Iterator[None]:
        """While the node may be stopped: a guard process that runs its start command if
        drctl dies before the ``finally`` that starts it (see drctl.pacs.start_guard)."""
        if not self.node.start:
            yield
            return
        logs = self.controller.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        guard = execute.spawn_guard(
            [sys.executable, "-m", "drctl.pacs.start_guard", "--", *self.node.start],
            log_path=logs / f"start-guard-{self.name}.log")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                guard.stdin.write(b"disarm\n")
                guard.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                guard.wait(30)  # it exits at once; if not, it is harmless

    def _copy_sqlite_command(self, staging: Path, read) -> IndexCopy:
        index = self.index_file
        assert index is not None
        out = self._command(self.node.snapshot_command, "snapshot_command")
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if not lines:
            raise JobFailed(f"node {self.name}: snapshot_command printed no path")
        frozen = Path(lines[-1]) / index.name
        if not frozen.is_file():
            raise JobFailed(f"node {self.name}: the frozen copy has no {index.name} "
                            f"(snapshot_command printed {lines[-1]})")
        taken = datetime.fromtimestamp(Path(lines[-1]).stat().st_mtime, UTC)
        taken = min(taken, datetime.now(UTC))
        raw = staging / "index.raw"
        sqlite_index.copy_files(frozen, raw)
        return self._finish_sqlite(raw, staging, "command", taken, None, read)

    def _copy_postgres(self, staging: Path, read) -> IndexCopy:
        target = postgres_index.PgTarget.parse(self.node.index)
        password = self.node.index_password.resolve() if self.node.index_password else None
        dest = staging / "index.dump"
        taken = datetime.now(UTC)
        holder: dict = {}

        def during(conn) -> Any:
            inventory = PostgresInventory(conn)
            holder["seq"] = inventory.last_change_seq()
            return read(inventory) if read else None

        result = postgres_index.dump(target, password, dest, during=during,
                                     timeout=self.controller.timeouts.command * 6)
        postgres_index.check_dump(dest)
        return IndexCopy(dest, "postgresql", "online", taken, dest.stat().st_size, None,
                         holder.get("seq"), "ok", result)

    def open_copy(self, path: Path) -> SqliteInventory:
        """The inventory of a staged SQLite index copy (a context manager)."""
        return SqliteInventory(path)

    @contextlib.contextmanager
    def open_index(self, database: str | None = None) -> Iterator[PostgresInventory]:
        """The inventory of the node's live PostgreSQL index (or of ``database`` on the
        same server, e.g. a restored copy not yet in use), read in one REPEATABLE READ
        transaction. Raises UsageError for a SQLite index (Orthanc holds it exclusively
        while it runs: use a copy) and NodeUnreachable when the database is unreachable."""
        if self.node.index_kind != "postgresql":
            raise UsageError(f"node {self.name}: a live SQLite index cannot be read "
                             "(Orthanc holds it exclusively); read a copy instead")
        target = postgres_index.PgTarget.parse(self.node.index)
        password = self.node.index_password.resolve() if self.node.index_password else None
        # autocommit, so the explicit BEGIN opens the transaction (no implicit one first)
        conn = postgres_index.connect(target, password, database=database, autocommit=True)
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield PostgresInventory(conn)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def last_change(self, timeout: float | None = None) -> int:
        """Position of the newest change the running node recorded (``/changes`` ``Last``,
        the same sequence as an index copy's ``change_seq``). Raises NodeUnreachable."""
        from drctl.pacs.orthanc.rest import OrthancRestError

        try:
            return self.rest(timeout=timeout).last_change()
        except OrthancRestError as exc:
            raise NodeUnreachable(f"node {self.name}: REST API did not answer: {exc}") from None

    # --- restore drills ----------------------------------------------------------------------

    def sandbox(self, options):
        """A throwaway Orthanc for a drill of this node's snapshot
        (:class:`drctl.pacs.orthanc.sandbox.OrthancSandbox`)."""
        from drctl.pacs.orthanc.sandbox import OrthancSandbox

        return OrthancSandbox(self, options)

    def standby_restore(self, options):
        """A drill's restore onto this standby
        (:class:`drctl.pacs.orthanc.standby.OrthancStandbyRestore`)."""
        from drctl.pacs.orthanc.standby import OrthancStandbyRestore

        return OrthancStandbyRestore(self, options)

    def newest_change_time(self) -> datetime | None:
        """When the running node last changed its data (newest change that is not a
        "Stable*" event), UTC; None on an empty node. Raises NodeUnreachable."""
        from drctl.pacs.orthanc.changes import newest_change_time

        return newest_change_time(self.rest(timeout=10))

    def changed_between(self, after: int, upto: int | None = None,
                        timeout: float | None = None) -> bool:
        """Whether the running node recorded a content change with ``after < seq <= upto``
        (``upto`` None: up to now). Orthanc's ``Stable*`` changes only mark that nothing
        arrived for a while: they are not content. Raises NodeUnreachable."""
        from drctl.pacs.orthanc.rest import OrthancRestError

        rest, since = self.rest(timeout=timeout), after
        try:
            while True:
                page = rest.changes(since=since, limit=CHANGES_PAGE)
                for change in page.get("Changes", []):
                    if upto is not None and change["Seq"] > upto:
                        return False
                    if not str(change["ChangeType"]).startswith("Stable"):
                        return True  # Stable* changes mark stability, not content
                if page.get("Done", True) or not page.get("Changes"):
                    return False
                since = page["Last"]
        except OrthancRestError as exc:
            raise NodeUnreachable(f"node {self.name}: REST API did not answer: {exc}") from None

    # --- stored files --------------------------------------------------------------------------

    def read_stored(self, path: str) -> bytes:
        """The bytes of a stored attachment as they are on disk. Raises FileNotFoundError."""
        return (self.storage_dir / path).read_bytes()

    @staticmethod
    def dicom_bytes(stored: bytes, compressed: bool) -> bytes:
        """The DICOM file inside a stored attachment (Orthanc's zlib format when
        ``compressed``)."""
        return decompress_attachment(stored) if compressed else stored

    def export_study(self, study_uid: str, dest: Path) -> list[Path]:
        """The DICOM files of one study as this node stores them, written into ``dest``
        (failback sends them to the recovered primary). Empty when the node lacks it."""
        rest = self.rest(timeout=self.controller.timeouts.dicom * 4)
        dest.mkdir(parents=True, exist_ok=True)
        files = []
        for hit in rest.post("/tools/lookup", study_uid.encode()) or []:
            if hit.get("Type") != "Study":
                continue
            for instance in rest.get(f"/studies/{hit['ID']}/instances"):
                path = dest / f"{instance['ID']}.dcm"
                path.write_bytes(rest.instance_file(instance["ID"]))
                files.append(path)
        return files
