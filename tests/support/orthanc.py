"""Real Orthanc nodes for tests: a sample archive, a node factory, a loaded node and a
node on a PostgreSQL index. Every node listens on free loopback ports, lives in its own
temporary folder, runs with TCP_NODELAY=1 and declares the controller's AE ``DRCTL``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from drctl.errors import NodeUnreachable
from drctl.net import free_port
from drctl.pacs.orthanc.load import store_files
from drctl.pacs.orthanc.nodeconfig import DicomTlsSpec, OrthancSpec, PostgresIndexSpec
from drctl.pacs.orthanc.process import OrthancProcess, launch
from drctl.sample import SampleArchive, generate
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER

CONTROLLER_AET = "DRCTL"
# Where nodes send C-MOVE results for DRCTL unless a test passes its own SCP port.
DEFAULT_CONTROLLER_PORT = 11112
SAMPLE_STUDIES = 30
LAUNCH_ATTEMPTS = 3


def node_spec(
    folder: Path,
    *,
    name: str,
    aet: str | None = None,
    compression: bool = False,
    postgres_db: str | None = None,
    limit_find_results: int = 0,
    limit_find_instances: int = 0,
    modalities: Mapping[str, tuple[str, str, int]] | None = None,
    controller_port: int | None = None,
    tls: DicomTlsSpec | None = None,
    **overrides: Any,
) -> OrthancSpec:
    """A loopback test node spec in ``folder`` on fresh free ports, with ``DRCTL``
    declared (on ``controller_port``) besides ``modalities``."""
    peers = {"drctl": (CONTROLLER_AET, "127.0.0.1", controller_port or DEFAULT_CONTROLLER_PORT)}
    peers.update(modalities or {})
    postgres = PostgresIndexSpec(PG_HOST, PG_PORT, postgres_db, PG_USER) if postgres_db else None
    return OrthancSpec(
        name=name,
        aet=aet or name.upper().replace("-", "_")[:16],
        dicom_port=free_port(),
        http_port=free_port(),
        storage_dir=folder / "storage",
        index_dir=folder / "index",
        compression=compression,
        postgres=postgres,
        modalities=peers,
        limit_find_results=limit_find_results,
        limit_find_instances=limit_find_instances,
        tls=tls,
        **overrides,
    )


def copy_sqlite_index(node: OrthancProcess, target: Path) -> Path:
    """Copy the SQLite index of a STOPPED node (with its -wal/-shm files) into
    ``target`` and return the copied ``index`` path."""
    if node.alive():
        raise RuntimeError("stop the node first: Orthanc holds its SQLite index exclusively")
    target.mkdir(parents=True, exist_ok=True)
    for source in node.spec.index_dir.glob("index*"):
        shutil.copy2(source, target / source.name)
    return target / "index"


def wait_until_stable(node: OrthancProcess, timeout: float = 30.0, quiet: float = 1.2) -> int:
    """Wait until every study is stable and the change feed has been quiet for
    ``quiet`` seconds (StableAge is 1 s on test nodes); return the last change seq."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        if all(study["IsStable"] for study in node.rest.iter_studies()):
            current = node.rest.last_change()
            if current == last:
                return current
            last = current
        time.sleep(quiet)
    raise TimeoutError(f"{node.spec.name} did not become stable within {timeout:.0f}s")


class OrthancFactory:
    """Starts test nodes; every node it started is stopped by :meth:`stop_all`."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._tmp = tmp_path_factory
        self.nodes: list[OrthancProcess] = []

    def __call__(
        self, name: str = "orthanc", *, no_jobs: bool = False, **spec_args: Any
    ) -> OrthancProcess:
        """Start a node (see :func:`node_spec` for ``spec_args``) and wait until ready.
        Retries on fresh ports when a port was taken meanwhile."""
        folder = self._tmp.mktemp(f"orthanc-{name}")
        for attempt in range(1, LAUNCH_ATTEMPTS + 1):
            spec = node_spec(folder, name=name, **spec_args)
            try:
                return self.relaunch(spec, folder, no_jobs=no_jobs)
            except NodeUnreachable as exc:
                in_use = "in use" in (exc.detail or "").lower()
                if attempt == LAUNCH_ATTEMPTS or not in_use:
                    raise
        raise AssertionError("unreachable")

    def relaunch(
        self, spec: OrthancSpec, folder: Path | None = None, *, no_jobs: bool = False
    ) -> OrthancProcess:
        """Start a node from an existing ``spec`` (e.g. again, after a stop)."""
        workdir = folder if folder is not None else spec.storage_dir.parent
        node = launch(spec, workdir, no_jobs=no_jobs, ready_timeout=60.0)
        self.nodes.append(node)
        return node

    def stop_all(self) -> None:
        """Stop every node, in parallel (Orthanc 1.10 takes 2-3 s to shut down)."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(pool.map(lambda node: node.stop(grace=10.0), self.nodes))


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory: pytest.TempPathFactory) -> SampleArchive:
    """~30 synthetic studies (2 series x 3 instances), generated once per session."""
    return generate(tmp_path_factory.mktemp("sample-archive"), studies=SAMPLE_STUDIES, seed=0)


@pytest.fixture(scope="session")
def orthanc_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancFactory]:
    """``orthanc_factory(name=..., compression=..., postgres_db=..., ...)`` starts an
    Orthanc and returns its :class:`OrthancProcess`; all are stopped at session end."""
    factory = OrthancFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def loaded_orthanc(orthanc_factory: OrthancFactory, sample_archive: SampleArchive):
    """A SQLite-index node holding ``sample_archive``. Shared: tests must not change it."""
    node = orthanc_factory("loaded")
    store_files(
        sample_archive.paths, aet=node.spec.aet, host=node.spec.host, port=node.spec.dicom_port
    )
    return node


@pytest.fixture
def orthanc_pg(orthanc_factory: OrthancFactory, pg_database: str) -> Iterator[OrthancProcess]:
    """An empty node whose index is a fresh PostgreSQL database (``pg_database``)."""
    node = orthanc_factory("pg", postgres_db=pg_database)
    try:
        yield node
    finally:
        node.stop(grace=10.0)
