"""Drills against injected faults: each one must fail the drill with the right finding
kind and name the affected study in the JSON and the HTML report. The clean case passes.

One primary (real Orthanc, SQLite index) is backed up once per module into a local restic
repository; every drill restores that snapshot into its own sandbox. Faults are injected
between the restore and the start of the node (the drill's ``before_start`` hook).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from drctl.catalog.models import Record, Snapshot
from tests.support.drills import (
    BackedUp,
    backed_up_primary,
    copy_env,
    flip_byte_near_end,
    manifest_instances,
    remove_series_rows,
)

STUDIES = 16


@pytest.fixture(scope="session")
def primary(tmp_path_factory) -> BackedUp:
    with backed_up_primary(
        tmp_path_factory.mktemp("drill-faults"), studies=STUDIES, series=2, instances=1
    ) as backed:
        yield backed


@pytest.fixture(scope="session")
def victim(primary: BackedUp) -> str:
    return sorted(primary.archive.study_uids)[3]


def victim_files(primary: BackedUp, node, study_uid: str) -> list[Path]:
    return [node.storage_dir / i.path for i in manifest_instances(primary.env, [study_uid])]


def assert_reported(report, kind: str, study_uid: str) -> None:
    """The drill failed with ``kind`` for ``study_uid``, in the result, the JSON file and
    the HTML page."""
    assert report.verdict == "failed"
    assert (kind, study_uid) in {(f["kind"], f["study_uid"]) for f in report.findings}
    document = json.loads(Path(report.json_path).read_text())
    assert document["state"] == "failed"
    assert any(f["kind"] == kind and f["study_uid"] == study_uid for f in document["findings"])
    page = Path(report.report_path).read_text()
    assert study_uid in page and kind in page and "Restore drill FAILED" in page
    assert report.studies_verified < report.studies_expected


def assert_no_patient_data(primary: BackedUp, *texts: str) -> None:
    for text in texts:
        for value in primary.archive.patient_names | primary.archive.patient_ids:
            assert value not in text


def test_clean_archive_passes_and_is_recorded(primary: BackedUp) -> None:
    report = primary.drill(scope="full")
    assert report.verdict == "passed", report.findings
    assert report.findings == []
    assert report.studies_expected == report.studies_verified == STUDIES
    assert set(report.layers) == {"index", "extra", "instances", "files", "served"}
    assert report.layers["files"]["checked"] == STUDIES * 2
    assert report.phases["verify"]["associations"]["find"] == 1
    assert report.target["no_jobs"] is True
    page = Path(report.report_path).read_text()
    assert "Restore drill PASSED" in page
    assert_no_patient_data(primary, page, Path(report.json_path).read_text())
    # no study UID in a clean report: UIDs only appear for studies with findings
    assert not any(uid in page for uid in primary.archive.study_uids)
    ctx = primary.env.context()
    with ctx.catalog.session() as s:
        snap = s.scalars(select(Snapshot)).one()
        kinds = {
            r.kind for r in s.scalars(select(Record).where(Record.refers_to == snap.snapshot_id))
        }
    ctx.catalog.close()
    assert snap.verified_drill_id == report.drill_id
    assert {"manifest", "verification", "report"} <= kinds
    assert not any((primary.root / "sandbox").iterdir())  # the sandbox is gone


def test_deleted_study_files_fail_the_drill(primary: BackedUp, victim: str) -> None:
    def delete(node, plan) -> None:
        for path in victim_files(primary, node, victim):
            path.unlink()

    report = primary.drill(scope="full", before_start=delete)
    assert_reported(report, "instance_missing", victim)
    assert any(f["layer"] == "files" and f["study_uid"] == victim for f in report.findings)


def test_truncated_instance_file_fails_the_drill(primary: BackedUp, victim: str) -> None:
    def truncate(node, plan) -> None:
        path = victim_files(primary, node, victim)[0]
        os.truncate(path, path.stat().st_size // 2)

    report = primary.drill(scope="full", before_start=truncate)
    assert_reported(report, "instance_corrupt", victim)


def test_altered_bytes_fail_the_drill(primary: BackedUp, victim: str) -> None:
    def alter(node, plan) -> None:
        flip_byte_near_end(victim_files(primary, node, victim)[-1])

    report = primary.drill(scope="full", verify_all=True, before_start=alter)
    assert_reported(report, "instance_corrupt", victim)
    layers = {f["layer"] for f in report.findings if f["study_uid"] == victim}
    assert layers == {"files", "served"}  # the MD5 and the served digest both differ


def test_series_missing_from_the_index_fails_the_drill(primary: BackedUp, victim: str) -> None:
    series = sorted({i.series_uid for i in manifest_instances(primary.env, [victim])})
    assert len(series) == 2

    def drop_series(node, plan) -> None:
        assert remove_series_rows(node.index_path, series[0]) == 1  # its one instance

    report = primary.drill(scope="full", before_start=drop_series)
    assert_reported(report, "count_mismatch", victim)
    detail = next(f["detail"] for f in report.findings if f["kind"] == "count_mismatch")
    assert "1 series on the node, 2 in the manifest" in detail


def test_standby_that_does_not_start_fails_and_is_rolled_back(
    primary: BackedUp, tmp_path: Path
) -> None:
    from drctl.net import free_port

    storage = tmp_path / "dead" / "storage"
    storage.mkdir(parents=True)
    (storage / "previous-data").write_text("the standby's own data\n")
    primary.add_node(
        "dead",
        {
            "kind": "orthanc",
            "role": "standby",
            "primary": "primary",
            "aet": "DEAD",
            "port": free_port(),
            "storage": str(storage),
            "index": f"sqlite:{storage / 'index'}",
            "start": ["false"],
            "stop": ["true"],
        },
    )
    report = primary.drill(standby="dead")
    assert report.verdict == "failed"
    assert [f["kind"] for f in report.findings] == ["standby_unreachable"]
    assert "Restore drill FAILED" in Path(report.report_path).read_text()
    assert report.studies_verified == 0
    assert report.phases["start"]["ok"] is False
    assert report.target["rolled_back"] is True
    assert sorted(p.name for p in storage.iterdir()) == ["previous-data"]
    assert sorted(p.name for p in storage.parent.iterdir()) == ["storage"]


def test_corrupted_pack_is_repository_damaged(primary: BackedUp, tmp_path: Path) -> None:
    env = copy_env(primary, tmp_path / "copy")
    env.doc["repository"]["local"]["check_read_subset"] = "1/1"
    env.write()
    packs = sorted((tmp_path / "copy" / "repo" / "data").rglob("*"), key=lambda p: p.stat().st_size)
    flip_byte_near_end(packs[-1])
    result = env.cli("drill", "run", "--full", check_exit=1)
    document = json.loads(result.stdout)
    kinds = {f["kind"] for f in document["findings"]}
    assert "repository_damaged" in kinds
    assert document["state"] == "failed"
    assert document["phases"]["check"]["ok"] is False
    assert "repository_damaged" in Path(document["report"]).read_text()
