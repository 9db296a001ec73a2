"""The PACS-neutral interface actions use, and the registry of PACS kinds.

An action never knows it talks to Orthanc: it asks the registry for the node's adapter
(``pacs_node(settings, name)``) and uses this small protocol. Adding a PACS kind means one
module implementing :class:`PacsNode` and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from drctl.config import Settings
from drctl.errors import UsageError


@dataclass(frozen=True)
class IndexCopy:
    """A consistent copy of a node's index database, staged at ``path`` (a single file:
    a SQLite database or a PostgreSQL custom-format dump)."""

    path: Path
    kind: str  # "sqlite" | "postgresql"
    method: str  # "stop-start" | "command" | "online"
    taken_at: datetime
    bytes: int
    outage_s: float | None = None
    change_seq: int | None = None
    integrity: str = "ok"
    # what the caller's ``read`` callback returned (see PacsNode.copy_index)
    inventory: Any = None
    extra: dict = field(default_factory=dict)


class StudyRow(Protocol):
    """A study as the PACS index records it (``patient_id`` is raw: callers hash it)."""

    study_uid: str
    public_id: str
    series_count: int
    instance_count: int
    modalities: tuple[str, ...]
    study_date: str | None
    patient_id: str
    max_instance_internal_id: int | None


class InstanceRow(Protocol):
    """An instance and its stored file (``storage_path`` relative to the storage area;
    ``internal_id`` grows with arrival; ``stored_md5`` is the MD5 of the stored bytes)."""

    internal_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    study_public_id: str
    storage_path: str | None
    compressed_size: int | None
    stored_md5: str | None

    @property
    def compressed(self) -> bool: ...


class Inventory(Protocol):
    """What an index copy says the PACS holds. Set-based reads: a handful of queries per
    call whatever the archive size."""

    def study_summaries(self) -> list[StudyRow]: ...

    def instances(self, *, after_internal_id: int | None = None,
                  study_public_ids: list[str] | None = None) -> Iterator[InstanceRow]: ...

    def max_internal_id(self) -> int: ...

    def last_change_seq(self) -> int: ...


class PacsNode(Protocol):
    """One configured PACS node, primary or standby."""

    name: str
    kind: str

    @property
    def storage_dir(self) -> Path: ...

    def storage_excludes(self) -> list[str]: ...

    def copy_index(self, staging: Path, read: Callable[[Inventory], Any] | None = None) -> IndexCopy:
        """Take a consistent copy of the index into ``staging`` and call ``read`` on the
        inventory at exactly that point in time; its result is ``IndexCopy.inventory``."""
        ...

    def open_copy(self, path: Path) -> AbstractContextManager[Inventory]:
        """The inventory of a staged (SQLite) index copy."""
        ...

    def open_index(self, database: str | None = None) -> AbstractContextManager[Inventory]:
        """The inventory of the node's live PostgreSQL index, or of another ``database``
        on the same server (UsageError for a SQLite index: read a copy)."""
        ...

    def last_change(self, timeout: float | None = None) -> int:
        """Position of the newest change the running node recorded (comparable with
        ``IndexCopy.change_seq``). Raises NodeUnreachable."""
        ...

    def sandbox(self, options: Any) -> Any:
        """A throwaway node of this kind for a drill of this node's snapshot: a
        :class:`drctl.pacs.restored.RestoredNode` (``options``: RestoreOptions)."""
        ...

    def standby_restore(self, options: Any) -> Any:
        """This standby as a drill's restore target (a RestoredNode)."""
        ...

    def newest_change_time(self) -> datetime | None:
        """When the running node last changed its data (UTC). Raises NodeUnreachable."""
        ...

    def changed_between(self, after: int, upto: int | None = None,
                        timeout: float | None = None) -> bool:
        """Whether the running node recorded a content change (not a mere stability
        marker) at a position in ``(after, upto]`` (``upto`` None: up to now). Raises
        NodeUnreachable."""
        ...

    def export_study(self, study_uid: str, dest: Path) -> list[Path]:
        """The study's DICOM files as the node stores them, written into ``dest``."""
        ...

    def read_stored(self, path: str) -> bytes: ...

    def dicom_bytes(self, stored: bytes, compressed: bool) -> bytes: ...

    def echo(self) -> float: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


# kind -> "module:class"; explicit, so the set of supported PACS is visible in one place
REGISTRY: dict[str, str] = {
    "orthanc": "drctl.pacs.orthanc.adapter:OrthancNode",
}


def pacs_node(settings: Settings, name: str) -> PacsNode:
    """The adapter for node ``name``. Raises UsageError for unknown nodes or kinds."""
    node = settings.node.get(name)
    if node is None:
        raise UsageError(f"no node named {name!r} (known: {', '.join(settings.node) or 'none'})")
    target = REGISTRY.get(node.kind)
    if target is None:
        raise UsageError(f"node.{name}.kind: unsupported PACS kind {node.kind!r}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(name, node, settings.controller)
