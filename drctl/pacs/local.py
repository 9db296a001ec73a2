"""PACS nodes run on this machine by drctl itself, for ``drctl demo``: a node of a given
kind in a folder of its own, started and stopped by PID file (the same ``start``/``stop``
commands its ``[node.*]`` table gives drctl, so stop-start index copies work), and loaded
with DICOM files. PACS-neutral: the kind's module is looked up in :data:`LOCAL_NODES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from drctl.errors import UsageError

LOCAL_NODES: dict[str, str] = {
    "orthanc": "drctl.pacs.orthanc.local:LocalOrthanc",
}


class LocalNode(Protocol):
    """A node drctl runs on this machine."""

    name: str

    def node_table(self) -> dict:
        """The ``[node.NAME]`` table of drctl.toml for this node."""
        ...

    def start(self) -> None:
        """Start it and wait until it accepts connections. Raises NodeUnreachable."""
        ...

    def stop(self) -> None:
        """Stop it if it runs (also one left over by an earlier run). Never raises."""
        ...

    def load(self, paths: Iterable[Path]) -> int:
        """Store DICOM files into it; returns how many were stored."""
        ...


def local_node(kind: str, folder: Path, *, name: str, aet: str, controller_aet: str) -> LocalNode:
    """A local node of ``kind`` living in ``folder``. Raises UsageError for unknown kinds."""
    target = LOCAL_NODES.get(kind)
    if target is None:
        raise UsageError(f"no local node support for PACS kind {kind!r}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(
        folder, name=name, aet=aet, controller_aet=controller_aet
    )
