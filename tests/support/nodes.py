"""PACS nodes that drctl itself may stop and start (``index_copy = "stop-start"``): an
Orthanc launched through ``drctl.pacs.orthanc.localctl`` with a PID file, exactly as a
host without systemd would run it, plus the ``[node.*]`` table drctl needs for it."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from drctl import execute
from drctl.pacs.orthanc.load import store_files
from drctl.pacs.orthanc.nodeconfig import OrthancSpec, write
from drctl.pacs.orthanc.rest import OrthancRest
from tests.support.orthanc import node_spec

LOCALCTL = [sys.executable, "-m", "drctl.pacs.orthanc.localctl"]


@dataclass
class ManagedNode:
    spec: OrthancSpec
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "orthanc.json"

    @property
    def pidfile(self) -> Path:
        return self.folder / "orthanc.pid"

    @property
    def rest(self) -> OrthancRest:
        return OrthancRest(self.spec.rest_url, timeout=30)

    @property
    def index_file(self) -> Path:
        return self.spec.index_dir / "index"

    def start_argv(self, no_jobs: bool = False) -> list[str]:
        return [*LOCALCTL, "start", "--config", str(self.config), "--pidfile", str(self.pidfile),
                *(["--no-jobs"] if no_jobs else [])]

    def stop_argv(self) -> list[str]:
        return [*LOCALCTL, "stop", "--pidfile", str(self.pidfile)]

    def start(self) -> None:
        result = execute.run(self.start_argv(), timeout=90)
        assert result.returncode == 0, result.stderr_text

    def stop(self) -> None:
        execute.run(self.stop_argv(), timeout=60)

    def load(self, paths) -> int:
        return store_files(list(paths), aet=self.spec.aet, host=self.spec.host,
                           port=self.spec.dicom_port)

    def node_table(self, **overrides) -> dict:
        """The drctl ``[node.NAME]`` table for this node."""
        table = {
            "kind": "orthanc", "aet": self.spec.aet, "host": "127.0.0.1",
            "port": self.spec.dicom_port, "rest": self.spec.rest_url,
            "storage": str(self.spec.storage_dir),
        }
        if self.spec.postgres is not None:
            pg = self.spec.postgres
            table["index"] = f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.database}"
            table["index_copy"] = "online"
        else:
            table["index"] = f"sqlite:{self.index_file}"
            table["index_copy"] = "stop-start"
            table["start"] = self.start_argv()
            table["stop"] = self.stop_argv()
        table.update(overrides)
        return table


def managed_node(folder: Path, name: str = "primary", **spec_args) -> ManagedNode:
    """Start a node in ``folder`` (storage and index in one folder: Orthanc's default
    layout, so the live index sits inside the storage area)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = node_spec(folder, name=name, **spec_args)
    spec = dataclasses.replace(spec, index_dir=spec.storage_dir)
    write(spec, folder / "orthanc.json")
    node = ManagedNode(spec, folder)
    node.start()
    return node
