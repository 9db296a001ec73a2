"""drctl.dicom.DicomClient against real pynetdicom SCPs started in-process on free
loopback ports: queries, retrievals, association counts, and every fault a peer can
throw at us, each ending in its typed error within the timeout."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import StoragePresentationContexts

from drctl.dicom import (
    DicomClient,
    DicomRetrieveFailed,
    DicomTruncated,
    InstanceRef,
    Peer,
    content_digest,
    file_digest,
)
from drctl.errors import (
    DicomAborted,
    DicomMalformed,
    DicomRejected,
    DicomTimeout,
    DicomUnreachable,
)
from drctl.net import free_port
from drctl.sample import SampleArchive, generate
from tests.support.dicom_peers import (
    Faults,
    ScpPacs,
    archive,
    header_instance,
    running_pacs,
    silent_listener,
)

TIMEOUT = 1.0
# A fault must end well within the timeout plus pynetdicom's polling and teardown.
DEADLINE = TIMEOUT + 3.0


def peer_of(pacs: ScpPacs) -> Peer:
    return Peer(pacs.aet, "127.0.0.1", pacs.port)


@pytest.fixture(scope="module")
def studies() -> list:
    return archive(40, instances=3)


@pytest.fixture
def pacs(studies) -> Iterator[ScpPacs]:
    with running_pacs() as node:
        node.add(studies)
        yield node


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SampleArchive:
    """Real Part 10 files in several transfer syntaxes (implicit and explicit VR LE,
    RLE, JPEG) from drctl.sample."""
    return generate(tmp_path_factory.mktemp("scp-files"), studies=4, seed=3)


def uids_of(datasets) -> list[str]:
    return sorted({str(ds.StudyInstanceUID) for ds in datasets})


# --- C-ECHO and C-FIND ------------------------------------------------------------------


def test_echo_returns_the_round_trip(pacs: ScpPacs) -> None:
    seconds = DicomClient(timeout=TIMEOUT).echo(peer_of(pacs))
    assert 0 < seconds < TIMEOUT


def test_bulk_find_by_uid_returns_every_study_with_counts(pacs: ScpPacs, studies) -> None:
    client = DicomClient(timeout=TIMEOUT)
    wanted = uids_of(studies)
    with client.open(peer_of(pacs)) as session:
        found = session.find_studies_by_uid(wanted + ["1.2.3.404"], batch=15)
    assert sorted(found) == wanted
    for record in found.values():
        assert (record.series_count, record.instance_count) == (1, 3)
        assert record.modalities == ("CT",)
        assert record.patient_id == "PID0001"
        assert record.study_date and record.study_date.startswith("2024")
    assert pacs.find_requests == 3  # 41 UIDs in batches of 15


@pytest.mark.parametrize("count", [10, 500])
def test_uid_check_opens_one_association_whatever_the_number_of_studies(count: int) -> None:
    data = archive(count, instances=1)
    with running_pacs() as node:
        node.add(data)
        client = DicomClient(timeout=10)
        started = time.perf_counter()
        with client.open(peer_of(node)) as session:
            found = session.find_studies_by_uid(uids_of(data))
        elapsed = time.perf_counter() - started
    assert len(found) == count
    assert client.associations_opened == 1
    assert node.associations == 1
    print(f"\n{count} studies by UID list: {elapsed * 1000:.0f} ms, {node.find_requests} C-FINDs")


def test_find_studies_by_date_range_and_wildcard(pacs: ScpPacs, studies) -> None:
    undated = header_instance(generate_uid(), study_date=None)
    pacs.add([undated])
    with DicomClient(timeout=TIMEOUT).open(peer_of(pacs)) as session:
        everything = session.find_studies()
        january = session.find_studies("20240101-20240110")
        one_day = session.find_studies("20240103")
        open_end = session.find_studies("20240120-")
    assert len(everything) == 41  # the undated study only matches the wildcard
    assert [r.study_date for r in january] == [f"202401{d:02d}" for d in range(1, 11)]
    assert [r.study_date for r in one_day] == ["20240103"]
    assert len(open_end) == 40 - 19
    assert undated.StudyInstanceUID not in {r.study_uid for r in january + open_end}


def test_extra_keys_are_returned(pacs: ScpPacs) -> None:
    with DicomClient(timeout=TIMEOUT).open(peer_of(pacs)) as session:
        records = session.find_studies("20240101", extra_keys=["PatientName"])
    assert records[0].extra == {"PatientName": "DOE^JANE"}


def test_series_and_instances(pacs: ScpPacs, studies) -> None:
    study_uid = str(studies[0].StudyInstanceUID)
    with DicomClient(timeout=TIMEOUT).open(peer_of(pacs)) as session:
        series = session.find_series(study_uid)
        instances = session.find_instances(study_uid)
        in_series = session.find_instances(study_uid, series[0].series_uid)
    assert [(s.modality, s.instance_count) for s in series] == [("CT", 3)]
    assert sorted(i.instance_number for i in instances) == [1, 2, 3]
    assert {i.sop_instance_uid for i in instances} == {i.sop_instance_uid for i in in_series}
    assert all(i.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2" for i in instances)


# --- truncation (status 0xFE00, as Orthanc's LimitFindResults) ------------------------


@pytest.fixture
def truncating(studies) -> Iterator[ScpPacs]:
    with running_pacs(faults=Faults(find_limit=7)) as node:
        node.add(studies)
        yield node


def test_truncated_uid_batches_are_split_until_complete(truncating: ScpPacs, studies) -> None:
    client = DicomClient(timeout=TIMEOUT)
    with client.open(peer_of(truncating)) as session:
        found = session.find_studies_by_uid(uids_of(studies), batch=40)
    assert sorted(found) == uids_of(studies)
    assert client.associations_opened == 1
    assert truncating.find_requests > 1


def test_truncated_date_ranges_are_split_until_complete(truncating: ScpPacs) -> None:
    with DicomClient(timeout=TIMEOUT).open(peer_of(truncating)) as session:
        found = session.find_studies("20240101-20241231")
    assert len(found) == 40


def test_truncated_wildcard_and_single_day_raise(truncating: ScpPacs) -> None:
    truncating.add(header_instance(generate_uid(), study_date="20240101") for _ in range(8))
    with DicomClient(timeout=TIMEOUT).open(peer_of(truncating)) as session:
        with pytest.raises(DicomTruncated) as wildcard:
            session.find_studies()
        with pytest.raises(DicomTruncated, match="20240101"):
            session.find_studies("20240101-20240102")
        assert session.is_open  # truncation is an answer, not a broken association
    assert wildcard.value.status == 0xFE00


def test_pause_reactor_waits_until_the_reactor_thread_blocks(pacs: ScpPacs) -> None:
    from drctl.dicom.association import pause_reactor

    with DicomClient(timeout=TIMEOUT).open(peer_of(pacs)) as session:
        assoc = session.association
        assert pause_reactor(assoc)
        assert assoc._reactor_checkpoint._cond._waiters  # the reactor waits on it
        assoc._reactor_checkpoint.set()
        assert len(session.find_studies_by_uid([])) == 0


def test_truncated_instance_list_is_asked_again_per_series() -> None:
    study_uid = generate_uid()
    series = [generate_uid() for _ in range(3)]
    data = [header_instance(study_uid, series_uid=s, number=n) for s in series for n in range(5)]
    big_series = generate_uid()
    data += [header_instance(study_uid, series_uid=big_series, number=n) for n in range(8)]
    with running_pacs(faults=Faults(find_limit=6)) as node:
        node.add(data)
        with DicomClient(timeout=TIMEOUT).open(peer_of(node)) as session:
            per_series = session.find_instances(study_uid, series[0])
            with pytest.raises(DicomTruncated, match=big_series):
                session.find_instances(study_uid)
    assert len(per_series) == 5


# --- faults: each a typed error within the timeout ---------------------------------------


def _within_deadline(action) -> Exception:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        action()
    assert time.monotonic() - started < DEADLINE
    return caught.value


def test_connection_refused_is_unreachable() -> None:
    peer = Peer("NOBODY", "127.0.0.1", free_port())
    error = _within_deadline(lambda: DicomClient(timeout=TIMEOUT).echo(peer))
    assert isinstance(error, DicomUnreachable)
    assert error.exit_code == 3


def test_silent_listener_is_unreachable_after_the_timeout() -> None:
    with silent_listener() as port:
        peer = Peer("SILENT", "127.0.0.1", port)
        error = _within_deadline(lambda: DicomClient(timeout=TIMEOUT).echo(peer))
    assert isinstance(error, DicomUnreachable)
    assert "did not answer the association request" in str(error)


def test_rejected_association_says_why(studies) -> None:
    with running_pacs(faults=Faults(reject_calling=True)) as node:
        error = _within_deadline(lambda: DicomClient(timeout=TIMEOUT).echo(peer_of(node)))
    assert isinstance(error, DicomRejected)
    assert "Rejected Permanent" in str(error)
    assert "Calling AE title not recognised" in str(error)


def test_abort_mid_find_is_aborted(studies) -> None:
    with running_pacs(faults=Faults(abort_find_after=5)) as node:
        node.add(studies)
        client = DicomClient(timeout=TIMEOUT)

        def find() -> None:
            with client.open(peer_of(node)) as session:
                session.find_studies()

        error = _within_deadline(find)
    assert isinstance(error, DicomAborted)
    assert "aborted" in str(error)


def test_stalled_peer_times_out_and_never_hangs(studies) -> None:
    with running_pacs(faults=Faults(stall=True)) as node:
        node.add(studies)
        client = DicomClient(timeout=TIMEOUT)

        def find() -> None:
            with client.open(peer_of(node)) as session:
                session.find_studies_by_uid(uids_of(studies))

        error = _within_deadline(find)
    assert isinstance(error, DicomTimeout)


def test_stalled_c_get_times_out(files: SampleArchive) -> None:
    with running_pacs(faults=Faults(stall=True)) as node:
        node.add_files(files.paths)
        refs = [_ref(i) for i in files.instances[:2]]
        error = _within_deadline(
            lambda: DicomClient(timeout=TIMEOUT).retrieve(peer_of(node), refs, lambda *a: None)
        )
    assert isinstance(error, DicomTimeout)


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_malformed_identifiers_are_malformed_and_leave_the_association_usable(studies) -> None:
    with running_pacs(faults=Faults(malformed=True)) as node:
        node.add(studies)
        with DicomClient(timeout=TIMEOUT).open(peer_of(node)) as session:
            error = _within_deadline(session.find_studies)
            assert session.is_open
            assert session.find_series(str(studies[0].StudyInstanceUID))
    assert isinstance(error, DicomMalformed)
    assert "NumberOfStudyRelatedInstances" in str(error)


def test_missing_service_context_is_rejected(pacs: ScpPacs) -> None:
    with DicomClient(timeout=TIMEOUT).open(peer_of(pacs), find=False, move=True) as session:
        with pytest.raises(DicomRejected, match="presentation context"):
            session.find_studies()


# --- C-GET, C-MOVE, C-STORE -------------------------------------------------------------


def _ref(item) -> InstanceRef:
    return InstanceRef(
        item.study_uid, item.series_uid, item.sop_uid, item.sop_class_uid, item.transfer_syntax_uid
    )


def test_c_get_digests_equal_the_original_files(files: SampleArchive) -> None:
    expected = {i.sop_uid: file_digest(i.path.read_bytes()) for i in files.instances}
    assert ImplicitVRLittleEndian in {d.transfer_syntax_uid for d in expected.values()}
    received: dict[str, tuple[str, str]] = {}

    def on_instance(sop_uid: str, sop_class: str, syntax: str, data: bytes) -> None:
        assert sop_class == expected[sop_uid].sop_class_uid
        received[sop_uid] = (syntax, content_digest(data, syntax))

    with running_pacs() as node:
        node.add_files(files.paths)
        client = DicomClient(timeout=5)
        summary = client.retrieve(peer_of(node), [_ref(i) for i in files.instances], on_instance)
    assert summary.ok and summary.received == len(files.instances)
    assert client.associations_opened == 1
    for sop_uid, (syntax, digest) in received.items():
        assert syntax == expected[sop_uid].transfer_syntax_uid  # stored syntax, no transcoding
        assert digest == expected[sop_uid].digest


def test_c_get_at_study_level_and_missing_uids(files: SampleArchive) -> None:
    study = files.studies[0]
    items = files.instances_of(study.study_uid)
    pairs = sorted({(i.sop_class_uid, i.transfer_syntax_uid) for i in items})
    with running_pacs() as node:
        node.add_files(files.paths)
        with DicomClient(timeout=5).open(peer_of(node), storage_contexts=pairs) as session:
            whole = session.get_instances(study.study_uid, None, None, lambda *a: None)
            some = session.get_instances(
                study.study_uid,
                items[0].series_uid,
                [items[0].sop_uid, "1.2.3.404"],
                lambda *a: None,
            )
    assert whole.received == study.instance_count
    assert some.received == 1 and some.missing == ("1.2.3.404",) and not some.ok


def test_c_get_failure_status_is_an_error_with_what_arrived(files: SampleArchive) -> None:
    study = files.studies[0]
    with running_pacs(faults=Faults(get_failure=0xA702)) as node:
        node.add_files(files.paths)
        refs = [_ref(i) for i in files.instances_of(study.study_uid)]
        with pytest.raises(DicomRetrieveFailed) as caught:
            DicomClient(timeout=5).retrieve(peer_of(node), refs, lambda *a: None)
    assert caught.value.status == 0xA702
    assert "Out of resources" in str(caught.value)
    assert caught.value.summary.received == 1
    assert len(caught.value.summary.failed_uids) >= 1


def test_callback_errors_are_raised_after_the_c_get(files: SampleArchive) -> None:
    def broken(*args) -> None:
        raise OSError("disk full")

    with running_pacs() as node:
        node.add_files(files.paths)
        refs = [_ref(i) for i in files.instances[:3]]
        with pytest.raises(OSError, match="disk full"):
            DicomClient(timeout=5).retrieve(peer_of(node), refs, broken)


def test_retrieve_splits_associations_only_beyond_127_pairs() -> None:
    classes = [str(cx.abstract_syntax) for cx in StoragePresentationContexts][:70]
    data = []
    study_uid, series_uid = generate_uid(), generate_uid()
    for cls in classes:
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            ds = header_instance(study_uid, series_uid=series_uid, syntax=syntax)
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = cls
            data.append(ds)
    refs = [
        InstanceRef(
            study_uid,
            series_uid,
            str(d.SOPInstanceUID),
            str(d.SOPClassUID),
            str(d.file_meta.TransferSyntaxUID),
        )
        for d in data
    ]
    with running_pacs() as node:
        node.add(data)
        client = DicomClient(timeout=5)
        summary = client.retrieve(peer_of(node), refs, lambda *a: None)
        assert summary.received == 140 and summary.ok
        assert client.associations_opened == 2
        with pytest.raises(ValueError, match="use DicomClient.retrieve"):
            with client.open(peer_of(node), storage_contexts=[r.pair for r in refs]):
                pass


def test_c_move_to_a_known_and_an_unknown_destination(files: SampleArchive) -> None:
    study = files.studies[0]
    with running_pacs() as source, running_pacs(aet="ARCHIVE2") as target:
        source.add_files(files.paths)
        source.destinations["ARCHIVE2"] = ("127.0.0.1", target.port)
        with DicomClient(timeout=5).open(peer_of(source), find=False, move=True) as session:
            moved = session.move_instances("ARCHIVE2", study.study_uid)
            with pytest.raises(DicomRetrieveFailed, match="Move destination unknown"):
                session.move_instances("NOWHERE", study.study_uid)
        assert moved.completed == study.instance_count and moved.ok
        assert {str(u) for u in target.instances} == {
            i.sop_uid for i in files.instances_of(study.study_uid)
        }


def test_store_files_on_one_association(files: SampleArchive, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    with running_pacs() as node:
        client = DicomClient(timeout=5)
        summary = client.store_files(peer_of(node), [*files.paths, junk])
        again = client.store_datasets(peer_of(node), [header_instance(generate_uid())])
        stored = len(node.instances)
    assert summary.stored == len(files.paths) and again.stored == 1
    assert [p.name for p in summary.failed] == [str(junk)]
    assert client.associations_opened == 2
    assert stored == len(files.paths) + 1


# --- hygiene ----------------------------------------------------------------------------


def test_no_patient_data_in_logs(pacs: ScpPacs, studies, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with DicomClient(timeout=TIMEOUT).open(peer_of(pacs)) as session:
        records = session.find_studies_by_uid(uids_of(studies)[:3], extra_keys=["PatientName"])
    assert records and caplog.records
    assert "PID0001" not in caplog.text and "DOE^JANE" not in caplog.text


def test_a_session_idle_beyond_the_timeout_is_closed_not_hung(pacs: ScpPacs, studies) -> None:
    with DicomClient(timeout=0.5).open(peer_of(pacs)) as session:
        time.sleep(1.5)  # network (idle) timeout: pynetdicom aborts the association
        with pytest.raises(DicomAborted, match="closed"):
            session.find_studies()
