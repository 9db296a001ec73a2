"""An Orthanc node run on this machine by drctl (``drctl demo``): generated configuration,
free loopback ports, storage and index in one folder (Orthanc's default layout), started
and stopped through :mod:`drctl.pacs.orthanc.localctl` by PID file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from drctl import execute
from drctl.errors import NodeUnreachable
from drctl.net import free_port
from drctl.pacs.orthanc.load import store_files
from drctl.pacs.orthanc.nodeconfig import OrthancSpec, write

log = logging.getLogger(__name__)

LOCALCTL = (sys.executable, "-m", "drctl.pacs.orthanc.localctl")
START_TIMEOUT = 120.0


class LocalOrthanc:
    """An Orthanc in ``folder``; the configuration is written on creation (new ports)."""

    def __init__(self, folder: Path, *, name: str, aet: str, controller_aet: str):
        self.folder = Path(folder)
        self.name = name
        storage = self.folder / "storage"
        self.spec = OrthancSpec(
            name=name,
            aet=aet,
            dicom_port=free_port(),
            http_port=free_port(),
            storage_dir=storage,
            index_dir=storage,
            modalities={"drctl": (controller_aet, "127.0.0.1", free_port())},
        )
        self.controller_aet = controller_aet

    @property
    def config(self) -> Path:
        return self.folder / "orthanc.json"

    @property
    def pidfile(self) -> Path:
        return self.folder / "orthanc.pid"

    def start_argv(self) -> list[str]:
        return [
            *LOCALCTL,
            "start",
            "--config",
            str(self.config),
            "--pidfile",
            str(self.pidfile),
            "--timeout",
            str(int(START_TIMEOUT)),
        ]

    def stop_argv(self) -> list[str]:
        return [*LOCALCTL, "stop", "--pidfile", str(self.pidfile)]

    def node_table(self) -> dict:
        return {
            "kind": "orthanc",
            "role": "primary",
            "aet": self.spec.aet,
            "host": "127.0.0.1",
            "port": self.spec.dicom_port,
            "rest": self.spec.rest_url,
            "storage": str(self.spec.storage_dir),
            "index": f"sqlite:{self.spec.index_dir / 'index'}",
            "index_copy": "stop-start",
            "start": self.start_argv(),
            "stop": self.stop_argv(),
        }

    def start(self) -> None:
        self.spec.storage_dir.mkdir(parents=True, exist_ok=True)
        write(self.spec, self.config)
        result = execute.run(self.start_argv(), timeout=START_TIMEOUT + 30)
        if result.returncode != 0:
            raise NodeUnreachable(
                f"Orthanc node {self.name} did not start: "
                f"{result.stderr_text.strip() or 'no message'}",
                hint=f"see {self.config.with_suffix('.log')}",
            )

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        try:
            execute.run(self.stop_argv(), timeout=60)
        except Exception as exc:  # stopping must not hide the caller's outcome
            log.error("Orthanc node %s may still run: %s", self.name, exc)

    def load(self, paths: Iterable[Path]) -> int:
        return store_files(
            list(paths),
            aet=self.spec.aet,
            host="127.0.0.1",
            port=self.spec.dicom_port,
            calling_aet=self.controller_aet,
        )
