"""The index inventory against real Orthanc 1.10 indexes: a SQLite copy taken from a
stopped node and a live PostgreSQL index; counts must equal what the REST API reports."""

from __future__ import annotations

import hashlib
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from drctl.pacs.orthanc.inventory import (
    COMPRESSION_ZLIB,
    InventoryError,
    PostgresInventory,
    SqliteInventory,
    last_change_seq,
    max_internal_id,
    open_inventory,
    study_summaries,
)
from drctl.pacs.orthanc.load import store_files
from drctl.sample import SampleArchive, more
from tests.support.orthanc import copy_sqlite_index, wait_until_stable
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER


@dataclass
class IndexCopy:
    """A node's index copied while stopped, and what REST said just before."""

    path: Path
    storage: Path
    studies: list[dict[str, Any]]
    statistics: dict[str, Any]
    last_change: int


def _store(node, paths) -> None:
    store_files(paths, aet=node.spec.aet, host=node.spec.host, port=node.spec.dicom_port)


def _rest_facts(node, path: Path) -> IndexCopy:
    last_change = wait_until_stable(node)  # stable-resource events are changes too
    return IndexCopy(
        path=path,
        storage=node.spec.storage_dir,
        studies=list(node.rest.iter_studies()),
        statistics=node.rest.statistics(),
        last_change=last_change,
    )


def _stop_and_copy(node, target: Path) -> IndexCopy:
    facts = _rest_facts(node, target / "index")
    node.stop()
    copy_sqlite_index(node, target)
    return facts


@pytest.fixture(scope="module")
def sqlite_copies(orthanc_factory, sample_archive, tmp_path_factory):
    """Two copies of one node's index: with the sample archive, then with 3 more
    studies added after a restart. Returns (first, second, added archive)."""
    node = orthanc_factory("inventory")
    _store(node, sample_archive.paths)
    first = _stop_and_copy(node, tmp_path_factory.mktemp("index-1"))
    added = more(sample_archive, 3, out_dir=tmp_path_factory.mktemp("added"))
    node = orthanc_factory.relaunch(node.spec)
    _store(node, added.paths)
    second = _stop_and_copy(node, tmp_path_factory.mktemp("index-2"))
    return first, second, added


def _check_against_rest(inventory, facts: IndexCopy, archive: SampleArchive) -> None:
    summaries = inventory.study_summaries()
    stats = facts.statistics
    assert len(summaries) == stats["CountStudies"] == len(archive.studies)
    assert sum(s.series_count for s in summaries) == stats["CountSeries"]
    assert sum(s.instance_count for s in summaries) == stats["CountInstances"]
    rest = {s["ID"]: s for s in facts.studies}
    for summary in summaries:
        expected = archive.study(summary.study_uid)
        assert len(rest[summary.public_id]["Series"]) == summary.series_count
        assert summary.instance_count == expected.instance_count
        assert summary.modalities == expected.modalities
        assert summary.study_date == expected.study_date
        assert summary.patient_id == expected.patient_id
    assert inventory.last_change_seq() == facts.last_change


def _check_instances(inventory, facts: IndexCopy, archive: SampleArchive) -> None:
    rows = list(inventory.instances())
    assert len(rows) == facts.statistics["CountInstances"]
    assert [r.internal_id for r in rows] == sorted(r.internal_id for r in rows)
    expected = {item.sop_uid: item for item in archive.instances}
    assert {r.sop_uid for r in rows} == set(expected)
    highest: dict[str, int] = {}
    for row in rows:
        item = expected[row.sop_uid]
        assert (row.study_uid, row.series_uid) == (item.study_uid, item.series_uid)
        assert row.sop_class_uid == item.sop_class_uid
        assert row.transfer_syntax_uid == item.transfer_syntax_uid
        data = (facts.storage / row.storage_path).read_bytes()
        assert len(data) == row.compressed_size == row.uncompressed_size
        assert hashlib.md5(data).hexdigest() == row.stored_md5 == row.uncompressed_md5
        highest[row.study_public_id] = max(highest.get(row.study_public_id, 0), row.internal_id)
    for summary in inventory.study_summaries():
        assert summary.max_instance_internal_id == highest[summary.public_id]
    assert inventory.max_internal_id() >= max(highest.values())


def test_sqlite_copy_matches_rest(sqlite_copies, sample_archive):
    first, _, _ = sqlite_copies
    with SqliteInventory(first.path) as inventory:
        _check_against_rest(inventory, first, sample_archive)
        _check_instances(inventory, first, sample_archive)


def test_sqlite_copy_is_opened_read_only(sqlite_copies):
    first, _, _ = sqlite_copies
    before = hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert len(study_summaries(first.path)) == 30
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == before


def test_instances_after_an_internal_id_are_exactly_the_new_ones(sqlite_copies, sample_archive):
    first, second, added = sqlite_copies
    mark = max_internal_id(first.path)
    with SqliteInventory(second.path) as inventory:
        _check_against_rest(inventory, second, sample_archive + added)
        new = list(inventory.instances(after_internal_id=mark))
    assert {r.sop_uid for r in new} == {i.sop_uid for i in added.instances}
    assert last_change_seq(second.path) > last_change_seq(first.path)


def test_instances_of_chosen_studies(sqlite_copies, sample_archive):
    first, _, _ = sqlite_copies
    with SqliteInventory(first.path) as inventory:
        chosen = [s.public_id for s in inventory.study_summaries()[3:5]]
        rows = list(inventory.instances(study_public_ids=chosen))
        assert {r.study_public_id for r in rows} == set(chosen) and len(rows) == 12
        assert list(inventory.instances(study_public_ids=[])) == []


def test_compressed_storage_md5s(orthanc_factory, sample_archive, tmp_path):
    node = orthanc_factory("inventory-zlib", compression=True)
    study = sample_archive.studies[1]
    _store(node, [i.path for i in sample_archive.instances_of(study.study_uid)])
    copy = _stop_and_copy(node, tmp_path)
    with SqliteInventory(copy.path) as inventory:
        rows = list(inventory.instances())
    assert len(rows) == study.instance_count
    for row in rows:
        data = (copy.storage / row.storage_path).read_bytes()
        assert row.compression_type == COMPRESSION_ZLIB and row.compressed
        assert len(data) == row.compressed_size < row.uncompressed_size
        assert hashlib.md5(data).hexdigest() == row.stored_md5
        assert hashlib.md5(zlib.decompress(data[8:])).hexdigest() == row.uncompressed_md5


def test_unreadable_sources_are_refused(tmp_path):
    with pytest.raises(InventoryError):
        SqliteInventory(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InventoryError):
        SqliteInventory(tmp_path / "junk")
    with pytest.raises(InventoryError):
        open_inventory(42)


def _pg_connect(dbname: str, **kw) -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, **kw)


def test_postgresql_index_matches_rest(orthanc_pg, sample_archive, pg_database):
    subset = sample_archive.studies[:10]
    archive = SampleArchive(
        root=sample_archive.root,
        seed=0,
        instances=tuple(i for s in subset for i in sample_archive.instances_of(s.study_uid)),
        studies=tuple(subset),
        next_study_number=11,
        series_per_study=2,
        instances_per_series=3,
    )
    _store(orthanc_pg, archive.paths)
    facts = _rest_facts(orthanc_pg, Path())
    with _pg_connect(pg_database) as conn:
        inventory = open_inventory(conn)
        assert isinstance(inventory, PostgresInventory)
        _check_against_rest(inventory, facts, archive)
        _check_instances(inventory, facts, archive)
        some = next(inventory.instances())
    assert orthanc_pg.rest.instance_md5(_instance_public_id(orthanc_pg, some)) == some.stored_md5


def _instance_public_id(node, row) -> str:
    found = node.rest.post("/tools/lookup", row.sop_uid.encode(), content_type="text/plain")
    return next(item["ID"] for item in found if item["Type"] == "Instance")


def test_postgresql_inventory_on_an_exported_snapshot(orthanc_pg, sample_archive, pg_database):
    first = sample_archive.studies[:2]
    _store(orthanc_pg, [i.path for s in first for i in sample_archive.instances_of(s.study_uid)])
    with (
        _pg_connect(pg_database) as exporter,
        _pg_connect(pg_database) as reader,
    ):
        exporter.isolation_level = reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        (snapshot,) = exporter.execute("SELECT pg_export_snapshot()").fetchone()
        reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        later = sample_archive.studies[2:4]
        _store(
            orthanc_pg, [i.path for s in later for i in sample_archive.instances_of(s.study_uid)]
        )
        frozen = PostgresInventory(reader)
        assert {s.study_uid for s in frozen.study_summaries()} == {s.study_uid for s in first}
        assert len(list(frozen.instances())) == 12
    with _pg_connect(pg_database, autocommit=True) as fresh:
        assert len(PostgresInventory(fresh).study_summaries()) == 4
        assert last_change_seq(fresh) == orthanc_pg.rest.last_change()


@pytest.fixture(scope="module")
def big_index(sqlite_copies, tmp_path_factory) -> Path:
    """A 100,000-study index in Orthanc's own SQLite schema (taken from a real index),
    one series and one instance per study."""
    first, _, _ = sqlite_copies
    source = sqlite3.connect(f"{first.path.as_uri()}?mode=ro", uri=True)
    schema = [
        row[0]
        for row in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'sqlite_sequence'"
        )
    ]
    source.close()
    path = tmp_path_factory.mktemp("big") / "index"
    conn = sqlite3.connect(path)
    for statement in schema:
        conn.execute(statement)
    conn.executescript(BIG_INDEX_SQL.format(n=100_000))
    conn.close()
    return path


BIG_INDEX_SQL = """
BEGIN;
CREATE TEMP TABLE n AS WITH RECURSIVE n(k) AS
    (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < {n}) SELECT k FROM n;
INSERT INTO Resources SELECT 4*k-3, 1, 'p' || k, NULL FROM n;
INSERT INTO Resources SELECT 4*k-2, 2, 's' || k, 4*k-3 FROM n;
INSERT INTO Resources SELECT 4*k-1, 3, 'se' || k, 4*k-2 FROM n;
INSERT INTO Resources SELECT 4*k, 4, 'i' || k, 4*k-1 FROM n;
INSERT INTO MainDicomTags SELECT 4*k-3, 16, 32, 'PID' || k FROM n;
INSERT INTO MainDicomTags SELECT 4*k-2, 32, 13, '1.2.3.' || k FROM n;
INSERT INTO MainDicomTags SELECT 4*k-2, 8, 32, '20240101' FROM n;
INSERT INTO MainDicomTags SELECT 4*k-1, 32, 14, '1.2.4.' || k FROM n;
INSERT INTO MainDicomTags SELECT 4*k-1, 8, 96, 'CT' FROM n;
INSERT INTO MainDicomTags SELECT 4*k, 8, 24, '1.2.5.' || k FROM n;
INSERT INTO Metadata SELECT 4*k, 9, '1.2.840.10008.1.2.1' FROM n;
INSERT INTO Metadata SELECT 4*k, 10, '1.2.840.10008.5.1.4.1.1.2' FROM n;
INSERT INTO AttachedFiles SELECT 4*k, 1, printf('%08x-0000-4000-8000-000000000000', k),
    1000, 1000, 1, 'md5', 'md5' FROM n;
INSERT INTO Changes(changeType, internalId, resourceType, date)
    SELECT 2, 4*k, 4, '20240101T000000' FROM n;
COMMIT;
"""


def test_a_100000_study_index_takes_seconds(big_index):
    with SqliteInventory(big_index) as inventory:
        started = time.monotonic()
        summaries = inventory.study_summaries()
        summary_s = time.monotonic() - started
        started = time.monotonic()
        recent = list(inventory.instances(after_internal_id=400_000 - 40))
        chosen = list(inventory.instances(study_public_ids=[f"s{k}" for k in range(1, 1001)]))
        targeted_s = time.monotonic() - started
    assert len(summaries) == 100_000 and summaries[-1].instance_count == 1
    assert len(recent) == 10 and len(chosen) == 1000
    assert summary_s < 15, f"study_summaries took {summary_s:.1f}s"
    assert targeted_s < 2, f"targeted instance queries took {targeted_s:.1f}s"
