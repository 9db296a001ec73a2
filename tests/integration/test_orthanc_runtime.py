"""Real Orthanc 1.10 processes: start/stop, REST client, C-STORE loading, Orthanc IDs,
compression, PostgreSQL index and ``--no-jobs``."""

from __future__ import annotations

import hashlib
import socket
import zlib
from pathlib import Path

import psycopg
import pydicom
import pytest

from drctl.errors import DicomAborted, DicomUnreachable, NodeUnreachable
from drctl.execute import run
from drctl.net import free_port, port_open
from drctl.pacs.orthanc import ids
from drctl.pacs.orthanc.load import store_files
from drctl.pacs.orthanc.nodeconfig import DicomTlsSpec
from drctl.pacs.orthanc.process import launch
from drctl.pacs.orthanc.rest import OrthancRest, OrthancRestError
from drctl.sample import generate
from tests.support.orthanc import node_spec
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER


def _store(node, paths, **kw) -> int:
    spec = node.spec
    return store_files(paths, aet=spec.aet, host=spec.host, port=spec.dicom_port, **kw)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_loaded_node_holds_the_whole_sample(loaded_orthanc, sample_archive):
    stats = loaded_orthanc.rest.statistics()
    assert stats["CountStudies"] == len(sample_archive.studies)
    assert stats["CountInstances"] == len(sample_archive.instances)
    studies = list(loaded_orthanc.rest.iter_studies(page_size=7))  # several pages
    by_uid = {s["MainDicomTags"]["StudyInstanceUID"]: s for s in studies}
    assert set(by_uid) == sample_archive.study_uids
    for study in sample_archive.studies:
        found = by_uid[study.study_uid]
        assert len(found["Series"]) == study.series_count
        assert found["PatientMainDicomTags"]["PatientID"] == study.patient_id
        assert found["MainDicomTags"].get("StudyDate") == study.study_date


def test_node_runs_with_tcp_nodelay_and_answers_rest(loaded_orthanc):
    assert loaded_orthanc.alive()
    assert _environ(loaded_orthanc.pid)["TCP_NODELAY"] == "1"
    system = loaded_orthanc.rest.system()
    assert system["Version"].startswith("1.10")
    assert system["DicomAet"] == loaded_orthanc.spec.aet
    assert system["DatabaseBackendPlugin"] is None  # SQLite index
    assert "drctl" in loaded_orthanc.rest.modalities()
    assert loaded_orthanc.rest.last_change() > 0
    page = loaded_orthanc.rest.changes(since=0, limit=5)
    assert len(page["Changes"]) == 5 and page["Done"] is False


def test_orthanc_ids_are_computed_offline(loaded_orthanc, sample_archive):
    rest = loaded_orthanc.rest
    for study in rest.iter_studies():
        patient = study["PatientMainDicomTags"]["PatientID"]
        uid = study["MainDicomTags"]["StudyInstanceUID"]
        assert study["ID"] == ids.study_id(patient, uid)
        assert study["ParentPatient"] == ids.patient_id(patient)
    item = sample_archive.instances[5]
    sop = ids.instance_id(item.patient_id, item.study_uid, item.series_uid, item.sop_uid)
    found = rest.get(f"/instances/{sop}")
    assert found["MainDicomTags"]["SOPInstanceUID"] == item.sop_uid
    assert found["ParentSeries"] == ids.series_id(item.patient_id, item.study_uid, item.series_uid)


def test_every_template_arrives_in_its_own_transfer_syntax(loaded_orthanc, sample_archive):
    one_per_template = {item.template: item for item in sample_archive.instances}
    assert len(one_per_template) >= 8
    for item in one_per_template.values():
        orthanc_id = ids.instance_id(item.patient_id, item.study_uid, item.series_uid, item.sop_uid)
        meta = loaded_orthanc.rest.instance_metadata(orthanc_id)
        assert meta["TransferSyntax"] == item.transfer_syntax_uid, item.template
        assert meta["SopClassUid"] == item.sop_class_uid
        assert meta["RemoteAET"] == "DRCTL"
        data = loaded_orthanc.rest.instance_file(orthanc_id)
        assert hashlib.md5(data).hexdigest() == loaded_orthanc.rest.instance_md5(orthanc_id)
        sent = pydicom.dcmread(item.path)
        stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        if "PixelData" in sent:
            assert stored.PixelData == sent.PixelData, item.template


def test_rest_errors_are_typed(loaded_orthanc):
    with pytest.raises(OrthancRestError) as caught:
        loaded_orthanc.rest.study("00000000-00000000-00000000-00000000-00000000")
    assert caught.value.status == 404 and "studies" in caught.value.url
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NodeUnreachable, match=dead):
        OrthancRest(dead, timeout=2).system()
    with pytest.raises(ValueError):
        loaded_orthanc.rest.delete("everything", "x")


def test_upload_delete_and_http_auth(orthanc_factory, sample_archive):
    node = orthanc_factory("auth", http_users={"admin": "pa55word"})
    with pytest.raises(OrthancRestError) as caught:
        OrthancRest(node.spec.rest_url).system()
    assert caught.value.status == 401
    assert "pa55word" not in repr(node.rest) and "pa55word" not in str(caught.value)
    answer = node.rest.upload(sample_archive.paths[0].read_bytes())
    assert answer["Status"] == "Success"
    assert node.rest.statistics()["CountInstances"] == 1
    node.rest.delete("studies", answer["ParentStudy"])
    assert node.rest.statistics()["CountStudies"] == 0


def test_storage_compression(orthanc_factory, sample_archive):
    node = orthanc_factory("zlib", compression=True)
    study = sample_archive.studies[0]
    assert _store(node, [i.path for i in sample_archive.instances_of(study.study_uid)]) == 6
    stats = node.rest.statistics()
    assert int(stats["TotalDiskSize"]) < int(stats["TotalUncompressedSize"])
    instance = node.rest.get("/instances")[0]
    # With compression Orthanc 1.10 also stores the header alone (fileType 3).
    assert node.rest.get(f"/instances/{instance}/attachments") == [
        "dicom",
        "dicom-until-pixel-data",
    ]
    files = [p for p in node.spec.storage_dir.rglob("*") if p.is_file()]
    assert len(files) == 12
    for path in files:
        data = path.read_bytes()
        assert data[128:132] != b"DICM"  # not a DICOM file on disk
        assert zlib.decompress(data[8:])[128:132] == b"DICM"  # 8-byte size, then zlib


def test_postgresql_index(orthanc_pg, sample_archive, pg_database):
    assert "PostgreSQLIndex" in orthanc_pg.rest.system()["DatabaseBackendPlugin"]
    paths = sample_archive.paths[:12]
    assert _store(orthanc_pg, paths) == 12
    assert orthanc_pg.rest.statistics()["CountInstances"] == 12
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=pg_database) as conn:
        (count,) = conn.execute("SELECT count(*) FROM attachedfiles").fetchone()
    assert count == 12
    assert not (orthanc_pg.spec.index_dir / "index").exists()


def test_no_jobs_keeps_saved_jobs_from_coming_back(orthanc_factory, sample_archive):
    dead_peer = {"dead": ("DEAD", "127.0.0.1", free_port())}
    node = orthanc_factory("jobs", modalities=dead_peer)
    _store(node, sample_archive.paths[:1])
    job = node.rest.post(
        "/modalities/dead/store", {"Resources": node.rest.get("/instances"), "Asynchronous": True}
    )
    node.stop()
    resumed = orthanc_factory.relaunch(node.spec)
    assert not resumed.no_jobs
    assert [j["ID"] for j in resumed.rest.jobs()] == [job["ID"]]
    resumed.stop()
    sandbox = orthanc_factory.relaunch(node.spec, no_jobs=True)
    assert b"--no-jobs" in Path(f"/proc/{sandbox.pid}/cmdline").read_bytes().split(b"\0")
    assert sandbox.rest.jobs() == []


def test_stop_kill_and_context_manager(tmp_path):
    spec = node_spec(tmp_path, name="brief")
    with launch(spec, tmp_path) as node:
        assert node.ready() and node.log_path.is_file()
        assert "Orthanc has started" in node.log_tail()
        node.kill()
        assert not node.alive() and node.popen.returncode == -9
    assert not port_open("127.0.0.1", spec.http_port)


def test_start_failure_reports_the_log(tmp_path):
    spec = node_spec(tmp_path, name="busy")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", spec.dicom_port))
        holder.listen()
        with pytest.raises(NodeUnreachable) as caught:
            launch(spec, tmp_path, ready_timeout=30)
    assert "busy" in str(caught.value)
    assert "already in use" in caught.value.detail


def test_store_failures_are_typed(loaded_orthanc, sample_archive, tmp_path):
    with pytest.raises(DicomUnreachable):
        store_files(sample_archive.paths[:1], aet="NOBODY", host="127.0.0.1", port=free_port())
    with pytest.raises(DicomAborted, match="STRANGER"):
        _store(loaded_orthanc, sample_archive.paths[:1], calling_aet="STRANGER")


def test_load_speed_with_tcp_nodelay(orthanc_factory, tmp_path):
    archive = generate(tmp_path, studies=50, seed=7)  # 300 instances
    node = orthanc_factory("speed")
    assert _store(node, archive.paths, batch_files=100) == 300
    assert node.rest.statistics()["CountInstances"] == 300


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    argv += ["-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"]
    assert run(argv, timeout=60).returncode == 0
    return key, cert


def test_dicom_tls_node(orthanc_factory, tmp_path):
    node_key, node_cert = _self_signed(tmp_path, "node")
    drctl_key, drctl_cert = _self_signed(tmp_path, "drctl")
    node = orthanc_factory("tls", tls=DicomTlsSpec(node_cert, node_key, drctl_cert))
    echo = ["echoscu", "-aet", "DRCTL", "-aec", node.spec.aet, "-to", "5", "-ta", "5"]
    where = ["127.0.0.1", str(node.spec.dicom_port)]
    tls = ["+tls", str(drctl_key), str(drctl_cert), "+cf", str(node_cert)]
    assert run([*echo, *tls, *where], env={"TCP_NODELAY": "1"}, timeout=30).returncode == 0
    assert run([*echo, *where], env={"TCP_NODELAY": "1"}, timeout=30).returncode != 0


def test_limit_find_results_truncates_c_find(orthanc_factory, sample_archive, tmp_path):
    node = orthanc_factory("limited", limit_find_results=3)
    studies = sample_archive.studies[:5]
    _store(node, [i.path for s in studies for i in sample_archive.instances_of(s.study_uid)])
    argv = ["findscu", "-v", "-S", "-X", "-od", str(tmp_path), "-aet", "DRCTL"]
    argv += ["-aec", node.spec.aet, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
    result = run([*argv, "127.0.0.1", str(node.spec.dicom_port)], env={"TCP_NODELAY": "1"})
    assert result.returncode == 0
    assert len(list(tmp_path.glob("rsp*.dcm"))) == 3  # 3 of 5 studies answered
    assert "Final Find Response (Cancel" in result.stderr_text  # status 0xFE00
