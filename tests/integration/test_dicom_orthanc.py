"""drctl.dicom.DicomClient against real Orthanc 1.10 nodes (tests/support/orthanc.py)
and cross-checked with dcmtk's findscu."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from drctl import execute
from drctl.dicom import (
    DicomClient,
    DicomTruncated,
    InstanceRef,
    Peer,
    StudyRecord,
    TlsSettings,
    content_digest,
    file_digest,
)
from drctl.dicom.records import parse_study
from drctl.errors import DicomAborted, DicomUnreachable, UsageError
from drctl.pacs.orthanc.ids import instance_id
from drctl.pacs.orthanc.nodeconfig import DicomTlsSpec
from drctl.pacs.orthanc.process import OrthancProcess
from drctl.sample import SampleArchive, SampleInstance
from tests.support.dicom_peers import ScpPacs, running_pacs

STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "PatientID",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


def peer_of(node: OrthancProcess) -> Peer:
    return Peer(node.spec.aet, node.spec.host, node.spec.dicom_port)


def ref(item: SampleInstance) -> InstanceRef:
    return InstanceRef(
        item.study_uid, item.series_uid, item.sop_uid, item.sop_class_uid, item.transfer_syntax_uid
    )


def expected_record(study) -> tuple:
    return (
        study.study_uid,
        study.study_date,
        study.patient_id,
        tuple(sorted(study.modalities)),
        study.series_count,
        study.instance_count,
    )


def as_tuple(record: StudyRecord) -> tuple:
    return (
        record.study_uid,
        record.study_date,
        record.patient_id,
        tuple(sorted(record.modalities)),
        record.series_count,
        record.instance_count,
    )


@pytest.fixture(scope="module")
def limited(orthanc_factory, sample_archive: SampleArchive) -> OrthancProcess:
    """A node with LimitFindResults=5 and LimitFindInstances=4, loaded by drctl's own
    C-STORE (one association)."""
    node = orthanc_factory("limited", limit_find_results=5, limit_find_instances=4)
    client = DicomClient(timeout=30)
    summary = client.store_files(peer_of(node), sample_archive.paths)
    assert summary.ok and summary.stored == len(sample_archive.paths)
    assert client.associations_opened == 1
    return node


@pytest.fixture(scope="module")
def destination() -> Iterator[ScpPacs]:
    with running_pacs(aet="DEST") as pacs:
        yield pacs


@pytest.fixture(scope="module")
def mover(orthanc_factory, sample_archive: SampleArchive, destination: ScpPacs) -> OrthancProcess:
    """A node that knows the pynetdicom SCP ``DEST`` as a C-MOVE destination, holding
    the first three studies."""
    node = orthanc_factory("mover", modalities={"dest": ("DEST", "127.0.0.1", destination.port)})
    paths = [
        i.path for s in sample_archive.studies[:3] for i in sample_archive.instances_of(s.study_uid)
    ]
    assert DicomClient(timeout=30).store_files(peer_of(node), paths).ok
    return node


def stored_digest(node: OrthancProcess, item: SampleInstance):
    """file_digest of the instance's file as Orthanc stored it (what a backup holds)."""
    blob = node.rest.instance_file(
        instance_id(item.patient_id, item.study_uid, item.series_uid, item.sop_uid)
    )
    return file_digest(blob)


# --- C-ECHO and C-FIND ------------------------------------------------------------------


def test_echo(loaded_orthanc: OrthancProcess) -> None:
    assert 0 < DicomClient(timeout=10).echo(peer_of(loaded_orthanc)) < 1


def test_bulk_find_by_uid_returns_every_study_with_its_counts(
    loaded_orthanc: OrthancProcess, sample_archive: SampleArchive
) -> None:
    client = DicomClient(timeout=10)
    with client.open(peer_of(loaded_orthanc)) as session:
        found = session.find_studies_by_uid([s.study_uid for s in sample_archive.studies])
    assert {as_tuple(r) for r in found.values()} == {
        expected_record(s) for s in sample_archive.studies
    }
    assert client.associations_opened == 1


def test_study_find_equals_findscu(loaded_orthanc: OrthancProcess, tmp_path: Path) -> None:
    node = loaded_orthanc
    argv = ["findscu", "-S", "-aet", "DRCTL", "-aec", node.spec.aet]
    argv += [arg for key in ("QueryRetrieveLevel=STUDY", *STUDY_KEYS) for arg in ("-k", key)]
    argv += ["-X", "-od", str(tmp_path), node.spec.host, str(node.spec.dicom_port)]
    result = execute.run(argv, env={"TCP_NODELAY": "1"}, timeout=60)
    assert result.returncode == 0, result.stderr_text
    theirs = {as_tuple(parse_study(dcmread(p))) for p in sorted(tmp_path.glob("rsp*.dcm"))}
    with DicomClient(timeout=10).open(peer_of(node)) as session:
        ours = {as_tuple(r) for r in session.find_studies()}
    assert ours == theirs
    assert len(ours) == 30


def test_uid_check_opens_one_association_whatever_the_number_of_studies(
    loaded_orthanc: OrthancProcess, sample_archive: SampleArchive
) -> None:
    uids = [s.study_uid for s in sample_archive.studies]
    for count in (3, len(uids)):
        client = DicomClient(timeout=10)
        with client.open(peer_of(loaded_orthanc)) as session:
            assert len(session.find_studies_by_uid(uids[:count], batch=7)) == count
        assert client.associations_opened == 1


def test_per_study_queries_on_one_association_are_fast(
    loaded_orthanc: OrthancProcess, sample_archive: SampleArchive
) -> None:
    """Measured (printed with -s): one C-FIND per study, all on one association."""
    uids = [s.study_uid for s in sample_archive.studies]
    client = DicomClient(timeout=10)
    with client.open(peer_of(loaded_orthanc)) as session:
        started = time.perf_counter()
        for uid in uids:
            assert uid in session.find_studies_by_uid([uid])
        per_query = (time.perf_counter() - started) / len(uids)
        started = time.perf_counter()
        session.find_studies_by_uid(uids)
        bulk = time.perf_counter() - started
    print(
        f"\nC-FIND: {per_query * 1000:.1f} ms/query per study; {bulk * 1000:.1f} ms for all {len(uids)} at once"
    )
    assert per_query < 0.04  # with Nagle on both ends this was ~50 ms (field notes)
    assert client.associations_opened == 1


# --- LimitFindResults: truncation is split, never taken as complete --------------------


def test_limit_find_results_still_yields_every_study(
    limited: OrthancProcess, sample_archive: SampleArchive
) -> None:
    client = DicomClient(timeout=10)
    dated = {expected_record(s) for s in sample_archive.studies if s.study_date}
    with client.open(peer_of(limited)) as session:
        by_uid = session.find_studies_by_uid([s.study_uid for s in sample_archive.studies])
        by_range = session.find_studies("19000101-29991231")
        with pytest.raises(DicomTruncated):
            session.find_studies()
    assert {as_tuple(r) for r in by_uid.values()} == {
        expected_record(s) for s in sample_archive.studies
    }
    assert {as_tuple(r) for r in by_range} == dated
    assert client.associations_opened == 1


def test_back_to_back_truncated_finds_never_lose_an_answer(
    limited: OrthancProcess, sample_archive: SampleArchive
) -> None:
    """pynetdicom's reactor may take a response that arrives right after the previous
    request ended (its pause flag lags behind): an identifier silently lost, or a C-FIND
    that never ends. drctl pauses the reactor itself (association.pause_reactor); without
    it, this test failed about every other run."""
    uids = [s.study_uid for s in sample_archive.studies]
    dated = sum(1 for s in sample_archive.studies if s.study_date)
    client = DicomClient(timeout=10)
    for _ in range(20):
        with client.open(peer_of(limited)) as session:
            assert len(session.find_studies_by_uid(uids)) == len(uids)
            assert len(session.find_studies("19000101-")) == dated


def test_limit_find_instances_is_split_per_series(
    limited: OrthancProcess, sample_archive: SampleArchive
) -> None:
    study = sample_archive.studies[0]
    with DicomClient(timeout=10).open(peer_of(limited)) as session:
        instances = session.find_instances(study.study_uid)
    assert {i.sop_instance_uid for i in instances} == {
        i.sop_uid for i in sample_archive.instances_of(study.study_uid)
    }


# --- C-GET: digests survive, transfer syntaxes are kept ---------------------------------


def test_c_get_digests_equal_the_stored_files(
    loaded_orthanc: OrthancProcess, sample_archive: SampleArchive
) -> None:
    implicit = [
        i for i in sample_archive.instances if i.transfer_syntax_uid == ImplicitVRLittleEndian
    ]
    sample = implicit + [
        i for i in sample_archive.instances[::3] if i.transfer_syntax_uid != ImplicitVRLittleEndian
    ]
    assert implicit and len(sample) > 40
    expected = {i.sop_uid: stored_digest(loaded_orthanc, i) for i in sample}
    received: dict[str, tuple[str, str]] = {}

    def on_instance(sop_uid: str, sop_class: str, syntax: str, data: bytes) -> None:
        received[sop_uid] = (syntax, content_digest(data, syntax))

    client = DicomClient(timeout=10)
    started = time.perf_counter()
    summary = client.retrieve(peer_of(loaded_orthanc), [ref(i) for i in sample], on_instance)
    per_instance = (time.perf_counter() - started) / len(sample)
    print(
        f"\nC-GET: {per_instance * 1000:.1f} ms/instance ({len(sample)} instances, digest included)"
    )
    assert summary.ok and summary.received == len(sample)
    assert client.associations_opened == 1
    for sop_uid, (syntax, digest) in received.items():
        assert syntax == expected[sop_uid].transfer_syntax_uid
        assert digest == expected[sop_uid].digest


@pytest.mark.parametrize(
    ("stored", "offered"),
    [
        (ImplicitVRLittleEndian, ExplicitVRLittleEndian),
        (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
    ],
)
def test_digest_survives_orthanc_transcoding(
    loaded_orthanc: OrthancProcess, sample_archive: SampleArchive, stored: str, offered: str
) -> None:
    items = [i for i in sample_archive.instances if i.transfer_syntax_uid == stored][:6]
    pairs = sorted({(i.sop_class_uid, offered) for i in items})
    received: dict[str, tuple[str, str]] = {}
    with DicomClient(timeout=10).open(peer_of(loaded_orthanc), storage_contexts=pairs) as session:
        for item in items:
            session.get_instances(
                item.study_uid,
                item.series_uid,
                [item.sop_uid],
                lambda uid, cls, syntax, data: received.__setitem__(
                    uid, (syntax, content_digest(data, syntax))
                ),
            )
    assert len(received) == len(items)
    for item in items:
        syntax, digest = received[item.sop_uid]
        assert syntax == offered  # Orthanc transcoded
        assert digest == stored_digest(loaded_orthanc, item).digest


# --- refusals, C-MOVE, C-STORE ----------------------------------------------------------


def test_unknown_calling_aet_is_a_typed_error(loaded_orthanc: OrthancProcess) -> None:
    started = time.monotonic()
    with pytest.raises(DicomAborted):
        with DicomClient("STRANGER", timeout=5).open(peer_of(loaded_orthanc)) as session:
            session.find_studies()
    assert time.monotonic() - started < 5


def test_c_move_to_a_declared_destination(
    mover: OrthancProcess, destination: ScpPacs, sample_archive: SampleArchive
) -> None:
    study = sample_archive.studies[1]
    with DicomClient(timeout=10).open(peer_of(mover), find=False, move=True) as session:
        summary = session.move_instances("DEST", study.study_uid)
    assert summary.ok and summary.completed == study.instance_count
    assert {i.sop_uid for i in sample_archive.instances_of(study.study_uid)} <= set(
        destination.instances
    )


def test_stored_files_are_found_with_their_counts(
    mover: OrthancProcess, sample_archive: SampleArchive
) -> None:
    studies = sample_archive.studies[:3]
    with DicomClient(timeout=10).open(peer_of(mover)) as session:
        found = session.find_studies_by_uid([s.study_uid for s in studies])
    assert {as_tuple(r) for r in found.values()} == {expected_record(s) for s in studies}


# --- DICOM over TLS -----------------------------------------------------------------------


def _certificate(folder: Path, name: str, password: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate and its key (encrypted with ``password`` if given)."""
    key, cert = folder / f"{name}-key.pem", folder / f"{name}-cert.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", f"/CN={name}"]
    argv += ["-keyout", str(key), "-out", str(cert)]
    argv += ["-passout", "env:KEY_PASSWORD"] if password else ["-nodes"]
    env = {"KEY_PASSWORD": password} if password else None
    assert execute.run(argv, env=env, timeout=60, secrets=[password or ""]).returncode == 0
    return key, cert


@pytest.fixture(scope="module")
def tls_node(orthanc_factory, tmp_path_factory) -> tuple[OrthancProcess, Path, Path, Path]:
    """A TLS-only node that requires drctl's client certificate; returns the node, its
    certificate, drctl's certificate and drctl's key (password ``drctl-key-pw``)."""
    folder = tmp_path_factory.mktemp("tls")
    node_key, node_cert = _certificate(folder, "node")
    drctl_key, drctl_cert = _certificate(folder, "drctl", password="drctl-key-pw")
    node = orthanc_factory("tls", tls=DicomTlsSpec(node_cert, node_key, drctl_cert))
    return node, node_cert, drctl_cert, drctl_key


def test_tls_association_with_client_certificate(tls_node) -> None:
    node, node_cert, drctl_cert, drctl_key = tls_node
    tls = TlsSettings(str(node_cert), str(drctl_cert), str(drctl_key), key_password="drctl-key-pw")
    peer = Peer(node.spec.aet, node.spec.host, node.spec.dicom_port, tls)
    client = DicomClient(timeout=5)
    assert client.echo(peer) < 1
    with client.open(peer) as session:
        assert session.find_studies() == []


@pytest.mark.parametrize("case", ["wrong-ca", "no-client-cert", "no-tls"])
def test_tls_failures_are_typed_and_quick(tls_node, case: str) -> None:
    node, node_cert, drctl_cert, drctl_key = tls_node
    settings = {
        "wrong-ca": TlsSettings(str(drctl_cert), str(drctl_cert), str(drctl_key), "drctl-key-pw"),
        "no-client-cert": TlsSettings(str(node_cert)),
        "no-tls": None,
    }[case]
    peer = Peer(node.spec.aet, node.spec.host, node.spec.dicom_port, settings)
    started = time.monotonic()
    with pytest.raises(DicomUnreachable):
        DicomClient(timeout=3).echo(peer)
    assert time.monotonic() - started < 6


def test_wrong_key_password_is_a_usage_error_without_the_password(tls_node) -> None:
    _, node_cert, drctl_cert, drctl_key = tls_node
    settings = TlsSettings(str(node_cert), str(drctl_cert), str(drctl_key), "not-the-pw")
    with pytest.raises(UsageError) as caught:
        settings.context()
    assert "not-the-pw" not in str(caught.value)
