"""Throwaway Orthanc nodes for restore drills (the SureBackup idea): a restored storage
tree and index copy, run by a generated configuration in a folder of their own, and
removed afterwards.

A restored index is production data with production habits, so the sandbox is fenced:

- started with ``--no-jobs`` and ``SaveJobs: false``: the index carries Orthanc's saved
  jobs, and a resumed job would send studies to a production peer (the job itself holds
  the peer's address, whatever ``DicomModalities`` says);
- only drctl's AE in ``DicomModalities`` (checked against its host), no Orthanc peers, no
  modalities or peers from the database, no Lua;
- free ports, clients on loopback only (``RemoteAccessAllowed: false``);
- a PostgreSQL-indexed node gets a temporary database on ``drill.sandbox_postgres``,
  dropped at the end.

Each sandbox folder holds ``drctl-sandbox.json`` (owner PID, Orthanc PID, temporary
database): a drill killed before it could clean up is cleaned up by the next one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drctl.errors import DrctlError, JobFailed, NodeUnreachable, UsageError
from drctl.execute import pid_alive
from drctl.indexdb import sqlite_index
from drctl.indexdb.postgres_index import PgTarget
from drctl.net import free_port, port_open
from drctl.pacs.orthanc.inventory import storage_path
from drctl.pacs.orthanc.nodeconfig import OrthancSpec, PostgresIndexSpec
from drctl.pacs.orthanc.process import OrthancProcess, launch
from drctl.pacs.restored import RestoreOptions

if TYPE_CHECKING:
    from drctl.pacs.orthanc.adapter import OrthancNode

log = logging.getLogger(__name__)

SANDBOX_AET = "DRCTL_SANDBOX"
OWNER_FILE = "drctl-sandbox.json"
LAUNCH_ATTEMPTS = 3
PATH_BATCH = 500

# Keys that keep a sandbox from talking to anyone but drctl (Orthanc 1.10 names).
FENCE = {
    "DicomCheckModalityHost": True,
    "DicomModalitiesInDatabase": False,
    "OrthancPeersInDatabase": False,
    "OrthancPeers": {},
    "LuaScripts": [],
    "ExecuteLuaEnabled": False,
    "MaximumStorageSize": 0,
    "MaximumPatientCount": 0,
}


def wait_for_echo(node: Any, timeout: float) -> float:
    """Poll C-ECHO on ``node`` (``peer()``/``dicom_client()``) until it answers; return
    the seconds waited. Raises NodeUnreachable with the last error."""
    from drctl.errors import DicomError

    client, peer = node.dicom_client(), node.peer()
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < timeout:
        if port_open(peer.host, peer.port, timeout=0.5):
            try:
                client.echo(peer)
                return time.monotonic() - started
            except DicomError as exc:
                last = exc
        time.sleep(0.1)
    raise NodeUnreachable(
        f"{peer} did not answer C-ECHO within {timeout:.0f}s" + (f": {last}" if last else "")
    )


class OrthancSandbox:
    """A sandbox Orthanc for a drill of ``source``'s snapshot (see the module doc)."""

    role = "sandbox"

    def __init__(self, source: OrthancNode, options: RestoreOptions):
        self.name = f"sandbox-{source.name}"
        self.source = source
        self.options = options
        self.workdir = Path(options.workdir)
        self.kind = source.node.index_kind
        self.process: OrthancProcess | None = None
        self.database: str | None = None
        self._pg: PgTarget | None = None
        if self.kind == "postgresql":
            if not options.postgres:
                raise UsageError(
                    f"node {source.name} has a PostgreSQL index: a sandbox drill needs "
                    "drill.sandbox_postgres (a server where drctl may create a temporary "
                    "database)",
                    hint="set it, or drill on a standby (--standby NAME)",
                )
            self._pg = PgTarget.parse(options.postgres)
        reap_stale(self.workdir.parent, options)
        # restored images and index hold patient data: the owner's alone
        self.workdir.mkdir(parents=True, exist_ok=False, mode=0o700)
        self.restore_dir.mkdir()
        (self.workdir / "index").mkdir()
        self._save_owner()

    # --- locations -------------------------------------------------------------------

    @property
    def restore_dir(self) -> Path:
        return self.workdir / "storage"

    @property
    def storage_dir(self) -> Path:
        return self.restore_dir

    @property
    def index_path(self) -> Path | None:
        return self.workdir / "index" / "index" if self.kind == "sqlite" else None

    def index_download(self, kind: str) -> Path:
        if kind != self.kind:
            raise JobFailed(
                f"the index copy is {kind} but node {self.source.name} is "
                f"configured with a {self.kind} index"
            )
        return self.workdir / ("index.download" if kind == "sqlite" else "index.dump")

    # --- life ------------------------------------------------------------------------

    def install(self) -> None:
        """SQLite: integrity check and rename into place. PostgreSQL: a temporary
        database restored from the dump."""
        download = self.index_download(self.kind)
        if self.kind == "sqlite":
            sqlite_index.check_integrity(download)
            os.replace(download, self.index_path)
            return
        from drctl.indexdb import pg_databases, postgres_index

        assert self._pg is not None
        self.database = f"drctl_sandbox_{uuid.uuid4().hex[:12]}"
        self._save_owner()
        conn = pg_databases.admin_connection(self._pg, self.options.postgres_password)
        try:
            pg_databases.create(conn, self.database)
        finally:
            conn.close()
        postgres_index.restore(
            self._pg.with_database(self.database), self.options.postgres_password, download
        )
        download.unlink()

    def restore_paths(self, paths: list[str]) -> list[str]:
        """``paths`` (DICOM attachments) plus the other attachments of the same instances
        in the installed index: with StorageCompression, Orthanc also keeps a
        "dicom-until-pixel-data" attachment it reads for instance-level C-FIND."""
        wanted = sorted({Path(p).name for p in paths})
        sql = (
            "SELECT b.uuid FROM AttachedFiles a JOIN AttachedFiles b ON b.id = a.id "
            "WHERE a.uuid IN ({})"
        )
        found: set[str] = set()
        with self._index_connection() as (conn, mark):
            for start in range(0, len(wanted), PATH_BATCH):
                batch = wanted[start : start + PATH_BATCH]
                found.update(row[0] for row in conn.execute(
                    sql.format(",".join([mark] * len(batch))), batch))
        return sorted(set(paths) | {storage_path(u) for u in found})

    @contextlib.contextmanager
    def _index_connection(self):
        """One read connection to the installed index, with its parameter marker."""
        if self.kind == "sqlite":
            with contextlib.closing(
                sqlite3.connect(f"file:{self.index_path}?mode=ro", uri=True)
            ) as conn:
                yield conn, "?"
            return
        from drctl.indexdb import postgres_index

        assert self._pg is not None and self.database
        conn = postgres_index.connect(
            self._pg, self.options.postgres_password, database=self.database
        )
        try:
            yield conn, "%s"
        finally:
            conn.close()

    def spec(self, dicom_port: int, http_port: int) -> OrthancSpec:
        """The sandbox's Orthanc configuration on the given ports."""
        postgres = None
        if self._pg is not None and self.database:
            postgres = PostgresIndexSpec(
                self._pg.host,
                self._pg.port,
                self.database,
                self._pg.user,
                self.options.postgres_password or "",
            )
        return OrthancSpec(
            name=self.name,
            aet=SANDBOX_AET,
            dicom_port=dicom_port,
            http_port=http_port,
            storage_dir=self.storage_dir,
            index_dir=self.workdir / "index",
            host="127.0.0.1",
            postgres=postgres,
            modalities={"drctl": (self.options.controller_aet, "127.0.0.1", free_port())},
            save_jobs=False,
            concurrent_jobs=1,
            stable_age=3600,
            extra=FENCE if postgres else {**FENCE, "Plugins": []},
        )

    def start(self) -> float:
        """Launch Orthanc with ``--no-jobs`` and wait for C-ECHO; returns the seconds
        from launch to the first C-ECHO. Raises NodeUnreachable (log tail in detail)."""
        started = time.monotonic()
        for attempt in range(1, LAUNCH_ATTEMPTS + 1):
            http = self.options.http_port or free_port()
            try:
                self.process = launch(
                    self.spec(free_port(), http),
                    self.workdir,
                    no_jobs=True,
                    ready_timeout=self.options.start_timeout,
                )
                break
            except NodeUnreachable as exc:  # a free port taken meanwhile: try others
                if attempt == LAUNCH_ATTEMPTS or "in use" not in (exc.detail or "").lower():
                    raise
        self._save_owner()
        remaining = max(1.0, self.options.start_timeout - (time.monotonic() - started))
        wait_for_echo(self, remaining)
        return time.monotonic() - started

    def peer(self) -> Any:
        from drctl.dicom.peers import Peer

        if self.process is None:
            raise NodeUnreachable(f"{self.name} is not running")
        return Peer(SANDBOX_AET, "127.0.0.1", self.process.spec.dicom_port)

    def dicom_client(self) -> Any:
        return self.source.dicom_client()

    def version(self) -> str | None:
        if self.process is None:
            return None
        try:
            return str(self.process.rest.system().get("Version"))
        except DrctlError:
            return None

    def describe(self) -> dict:
        spec = self.process.spec if self.process else None
        return {
            "kind": "orthanc",
            "role": "sandbox",
            "aet": SANDBOX_AET,
            "dicom_port": spec.dicom_port if spec else None,
            "index": self.kind,
            "no_jobs": bool(self.process and self.process.no_jobs),
            "temporary_database": bool(self.database),
        }

    def close(self) -> None:
        """Kill Orthanc (its data is thrown away), drop the temporary database, remove
        the folder. Never raises; problems are logged."""
        if self.process is not None:
            self.process.kill()
        _drop_database(self._pg, self.options.postgres_password, self.database)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _save_owner(self) -> None:
        owner = {
            "pid": os.getpid(),
            "database": self.database,
            "orthanc_pid": self.process.pid if self.process else None,
        }
        (self.workdir / OWNER_FILE).write_text(json.dumps(owner))


def _drop_database(pg: PgTarget | None, password: str | None, database: str | None) -> None:
    if pg is None or not database:
        return
    from drctl.indexdb import pg_databases

    try:
        conn = pg_databases.admin_connection(pg, password)
        try:
            pg_databases.drop(conn, database)
        finally:
            conn.close()
    except DrctlError as exc:
        log.warning("temporary sandbox database %s not dropped: %s", database, exc)


def reap_stale(root: Path, options: RestoreOptions) -> list[Path]:
    """Remove sandbox folders under ``root`` whose drill process is gone (killed before
    it could clean up): their Orthanc is killed, their temporary database dropped.
    Returns the folders removed."""
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        owner_file = folder / OWNER_FILE
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner.get("pid")):
            continue
        orthanc = owner.get("orthanc_pid")
        if pid_alive(orthanc) and _is_orthanc(orthanc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(orthanc, 9)
        pg = PgTarget.parse(options.postgres) if options.postgres else None
        _drop_database(pg, options.postgres_password, owner.get("database"))
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("removed the sandbox %s left behind by an interrupted drill", folder)
        removed.append(folder)
    return removed


def _is_orthanc(pid: int) -> bool:
    try:
        return "Orthanc" in Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
