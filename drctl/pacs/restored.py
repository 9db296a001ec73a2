"""A PACS node brought up on restored data, for restore drills: a throwaway sandbox or a
configured standby. PACS-neutral: actions use these types; each PACS kind implements
them (Orthanc: :mod:`drctl.pacs.orthanc.sandbox`, :mod:`drctl.pacs.orthanc.standby`).

The life of a restored node, driven by the drill::

    target = pacs.sandbox(options)        # or standby_pacs.standby_restore(options)
    try:
        restic restore ... --target target.restore_dir
        restic dump <index record> > target.index_download(kind)
        target.install()                  # index in place (standby: stop, swap)
        # (a partial drill, sandbox only, installs the index first and restores just
        #  target.restore_paths(<the sampled instances' files>))
        target.start()                    # seconds until the node answered C-ECHO
        ... verify over DICOM and on target.storage_dir ...
    finally:
        target.close()                    # sandbox: stop and remove; standby: keep or roll back
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class RestoreOptions:
    """What a restored node needs besides its PACS settings.

    ``workdir``: a fresh folder owned by this drill (a sandbox lives in it; a standby keeps
    its downloaded index copy there). ``postgres`` / ``postgres_password``: a PostgreSQL
    server (``postgresql://user@host:port/db``) where a sandbox of a PostgreSQL-indexed
    node may create and drop a temporary database. ``http_port``: the sandbox's REST port
    (default: a free one). ``start_timeout``: seconds to wait for C-ECHO after a start.
    """

    workdir: Path
    controller_aet: str
    start_timeout: float = 300.0
    postgres: str | None = None
    postgres_password: str | None = field(default=None, repr=False)
    http_port: int | None = None


class RestoredNode(Protocol):
    """A node running (or about to run) on restored data."""

    name: str
    role: str  # "sandbox" | "standby"

    @property
    def restore_dir(self) -> Path:
        """The empty folder restic restores the storage tree into."""
        ...

    @property
    def storage_dir(self) -> Path:
        """Where the restored storage tree is once installed (the node reads it there)."""
        ...

    @property
    def index_path(self) -> Path | None:
        """The installed SQLite index file (None for a PostgreSQL index)."""
        ...

    def index_download(self, kind: str) -> Path:
        """Where the index copy record (``kind`` sqlite | postgresql) is to be written."""
        ...

    def restore_paths(self, paths: list[str]) -> list[str]:
        """Every storage path to restore so that the instances stored at ``paths`` (their
        DICOM files, relative to the storage area) work: ``paths`` plus the PACS's other
        attachments of the same instances. Needs the index installed."""
        ...

    def install(self) -> None:
        """Put the restored index in place (a standby is stopped and swapped here).
        Raises JobFailed (or IndexCorrupt) when the index cannot be installed."""
        ...

    def start(self) -> float:
        """Start the node; return the seconds until it answered C-ECHO. Raises
        NodeUnreachable or JobFailed when it does not come up."""
        ...

    def peer(self) -> Any:
        """The :class:`drctl.dicom.Peer` to verify."""
        ...

    def dicom_client(self) -> Any:
        """A :class:`drctl.dicom.DicomClient` calling as the controller's AE."""
        ...

    def version(self) -> str | None:
        """The PACS software version the node reports (None when it does not say)."""
        ...

    def describe(self) -> dict:
        """What this node is, for the report (no secrets)."""
        ...

    def close(self) -> None:
        """End the drill's use of the node. A sandbox is stopped and removed (its
        temporary database dropped); a standby keeps the restored data once it started,
        and is rolled back to its previous data when it did not. Never raises."""
        ...
