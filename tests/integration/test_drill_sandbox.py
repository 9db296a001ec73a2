"""The sandbox is fenced from production, and PostgreSQL-indexed nodes drill too.

- A restored index carries Orthanc's saved jobs. A sandbox started from an index holding a
  pending transfer to a peer must send that peer nothing (a listening pynetdicom SCP
  stands for the production peer; the primary itself shows the job does resume when
  Orthanc is started without ``--no-jobs``).
- A primary with a PostgreSQL index drills in a sandbox on a temporary database, dropped
  afterwards, and onto a PostgreSQL standby whose database is swapped by name.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pynetdicom import AE, StoragePresentationContexts, evt

from drctl.net import free_port
from tests.support.drctl_env import make_env
from tests.support.drills import BackedUp, backed_up_primary, standby_node, standby_table
from tests.support.nodes import managed_node
from tests.support.postgres import admin_connect, create_database, drop_database

PEER_AET = "PROD_PEER"
SANDBOX_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class SlowPeer:
    """A production peer that stores slowly (so a job is still running at the backup)."""

    port: int = field(default_factory=free_port)
    stored: list[float] = field(default_factory=list)
    associations: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def serve(self):
        ae = AE(ae_title=PEER_AET)
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_SYNTAXES)
        handlers = [(evt.EVT_REQUESTED, self._requested), (evt.EVT_C_STORE, self._store)]
        return ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _requested(self, event) -> None:
        with self._lock:
            self.associations.append((time.monotonic(), event.assoc.requestor.ae_title))

    def _store(self, event) -> int:
        time.sleep(0.6)
        with self._lock:
            self.stored.append(time.monotonic())
        return 0x0000

    def count(self) -> int:
        with self._lock:
            return len(self.stored) + len(self.associations)


ALL_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
]


@pytest.fixture
def slow_peer() -> Iterator[SlowPeer]:
    peer = SlowPeer()
    server = peer.serve()
    try:
        yield peer
    finally:
        server.shutdown()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_sandbox_never_resumes_a_saved_job(tmp_path, slow_peer: SlowPeer) -> None:
    from drctl.sample import generate

    node = managed_node(
        tmp_path / "primary",
        "primary",
        modalities={"peer": (PEER_AET, "127.0.0.1", slow_peer.port)},
    )
    try:
        archive = generate(
            tmp_path / "sample", studies=12, series_per_study=1, instances_per_series=2, seed=5
        )
        node.load(archive.paths)
        instances = [
            i["ID"]
            for s in node.rest.get("/studies")
            for i in node.rest.get(f"/studies/{s}/instances")
        ]
        node.rest.post("/modalities/peer/store", {"Resources": instances, "Asynchronous": True})
        wait_for(lambda: len(slow_peer.stored) >= 1)  # the job is running
        env = make_env(
            tmp_path / "drctl",
            repositories={"local": {"url": str(tmp_path / "repo")}},
            nodes={"primary": node.node_table()},
            drill={"sandbox_dir": str(tmp_path / "sandbox")},
        )
        env.cli("repo", "init", check_exit=0)
        before_backup = len(slow_peer.stored)
        assert env.cli_json("backup", "run")["state"] == "succeeded"  # stop-start copy
        # Started again without --no-jobs, the primary resumes the saved job:
        wait_for(lambda: len(slow_peer.stored) > before_backup + 2)
        node.stop()
        time.sleep(1.0)
        quiet = slow_peer.count()
        seen: dict = {}

        def saved_job(restored, plan) -> None:
            with sqlite3.connect(restored.index_path) as conn:
                seen["jobs"] = [
                    v
                    for (v,) in conn.execute("SELECT value FROM GlobalProperties")
                    if PEER_AET in (v or "")
                ]

        backed = BackedUp(tmp_path, node, archive, env, {})
        report = backed.drill(scope="full", before_start=saved_job)
        time.sleep(2.0)  # a resumed job would have sent something by now
    finally:
        node.stop()
    assert seen["jobs"], "the restored index holds no saved job to the peer"
    assert slow_peer.count() == quiet  # the sandbox sent the peer nothing
    assert report.verdict == "passed", report.findings
    assert report.target["no_jobs"] is True


@pytest.fixture(scope="session")
def pg_primary(tmp_path_factory) -> Iterator[BackedUp]:
    with backed_up_primary(
        tmp_path_factory.mktemp("drill-pg"),
        studies=10,
        postgres=True,
        drill={"sandbox_postgres": SANDBOX_PG},
    ) as backed:
        yield backed


def databases(prefix: str) -> list[str]:
    with admin_connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return sorted(r[0] for r in rows)


def test_postgresql_primary_drills_in_a_sandbox_on_a_temporary_database(
    pg_primary: BackedUp,
) -> None:
    before = databases("drctl_sandbox_")
    report = pg_primary.drill(scope="full")
    assert report.verdict == "passed", report.findings
    assert report.studies_verified == 10
    assert report.target["index"] == "postgresql" and report.target["temporary_database"]
    assert databases("drctl_sandbox_") == before  # dropped again


def test_postgresql_standby_is_swapped_by_database_name(pg_primary: BackedUp) -> None:
    database = create_database("drctl_pgstandby")
    node = standby_node(pg_primary.root, "pgstandby", postgres_db=database)
    try:
        pg_primary.add_node("pgstandby", standby_table(node))
        report = pg_primary.drill(standby="pgstandby")
        assert report.verdict == "passed", report.findings
        assert node.rest.get("/statistics")["CountStudies"] == 10
        assert databases(database) == [database]  # no _drctl_new / _drctl_old left
    finally:
        node.stop()
        for name in databases(database):
            drop_database(name)


def test_compressed_storage_drills_in_full_and_partially(tmp_path) -> None:
    """With StorageCompression, stored files are Orthanc's zlib format and each instance
    has a second attachment (dicom-until-pixel-data) that the manifest does not list but
    instance-level C-FIND needs: a partial drill must restore it too."""
    with backed_up_primary(tmp_path, studies=8, series=2, instances=1, compression=True) as b:
        full = b.drill(scope="full", verify_all=True)
        partial = b.drill(scope="partial", sample_studies=3)
    assert full.verdict == "passed", full.findings
    assert full.layers["served"]["received"] == 16
    assert partial.verdict == "passed", partial.findings
    # 6 DICOM files, and the second attachment of those that have pixel data
    assert 6 < partial.phases["restore"]["files_included"] <= 12
    assert partial.layers["instances"]["studies_proven"] == 3
