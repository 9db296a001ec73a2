"""In-process DICOM peers for drctl.dicom tests: real pynetdicom SCPs on free loopback
ports (no mocks), serving datasets from memory, with switchable faults.

:class:`ScpPacs` answers C-ECHO, C-FIND (study/series/image, UID lists, date ranges),
C-GET, C-MOVE and C-STORE. ``faults`` makes it misbehave the way real nodes do: reject
the association, abort mid-find, stall, return malformed identifiers, truncate a C-FIND
with status 0xFE00 like Orthanc's ``LimitFindResults``, end a C-GET with a failure.
:func:`silent_listener` accepts TCP connections and never speaks.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from drctl.net import free_port

SCP_AET = "TESTPACS"


@dataclass
class Faults:
    """Ways an :class:`ScpPacs` misbehaves (all off by default)."""

    reject_calling: bool = False  # accept only the AE title "SOMEONE_ELSE"
    abort_find_after: int | None = None  # A-ABORT after this many C-FIND matches
    stall: bool = False  # C-FIND/C-GET handlers never answer
    malformed: bool = False  # C-FIND study matches carry an undecodable count
    find_limit: int = 0  # like Orthanc LimitFindResults: N matches, then 0xFE00
    get_failure: int | None = None  # C-GET ends with this status after one instance


@dataclass
class ScpPacs:
    """A pynetdicom PACS on 127.0.0.1. Use :func:`running_pacs` to start and stop it."""

    aet: str = SCP_AET
    faults: Faults = field(default_factory=Faults)
    instances: dict[str, Dataset] = field(default_factory=dict)
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    associations: int = 0
    find_requests: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._release = threading.Event()  # frees stalled handlers at shutdown
        self._lock = threading.Lock()

    def add(self, datasets: Iterable[Dataset]) -> None:
        for ds in datasets:
            self.instances[str(ds.SOPInstanceUID)] = ds

    def add_files(self, paths: Iterable[Path]) -> None:
        self.add(dcmread(path) for path in paths)

    # --- server --------------------------------------------------------------------

    def start(self) -> None:
        ae = AE(ae_title=self.aet)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 30
        if self.faults.reject_calling:
            ae.require_calling_aet = ["SOMEONE_ELSE"]
        ae.add_supported_context(Verification)
        for model in (
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
        ):
            ae.add_supported_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        for cx in StoragePresentationContexts:
            ae.add_supported_context(
                cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
        handlers = [
            (evt.EVT_CONN_OPEN, _nodelay),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self.port = free_port()
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()

    def _on_requested(self, event) -> None:
        with self._lock:
            self.associations += 1

    # --- C-FIND --------------------------------------------------------------------

    def _on_find(self, event) -> Iterator:
        with self._lock:
            self.find_requests += 1
        if self.faults.stall:
            self._release.wait(60)
            return
        query = event.identifier
        matches = list(_matches(query, list(self.instances.values())))
        limit = self.faults.find_limit
        for number, match in enumerate(matches, start=1):
            if self.faults.abort_find_after is not None and number > self.faults.abort_find_after:
                event.assoc.abort()
                return
            if limit and number > limit:
                yield 0xFE00, None  # Orthanc ends a truncated answer with Cancel
                return
            if self.faults.malformed:
                match[Tag(0x00201208)] = RawDataElement(
                    Tag(0x00201208), "IS", 4, b"1x2\x00", 0, False, True
                )
            yield 0xFF00, match

    # --- C-GET / C-MOVE / C-STORE --------------------------------------------------

    def _retrieve(self, query: Dataset) -> list[Dataset]:
        level = query.QueryRetrieveLevel
        wanted = {
            "STUDY": ("StudyInstanceUID",),
            "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
            "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
        }[level]
        return [
            ds for ds in self.instances.values() if all(_uid_match(query, ds, k) for k in wanted)
        ]

    def _on_get(self, event) -> Iterator:
        if self.faults.stall:
            self._release.wait(60)
            return
        found = self._retrieve(event.identifier)
        yield len(found)
        for number, ds in enumerate(found, start=1):
            if self.faults.get_failure is not None and number > 1:
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = [str(d.SOPInstanceUID) for d in found[1:]]
                yield self.faults.get_failure, failed
                return
            yield 0xFF00, ds

    def _on_move(self, event) -> Iterator:
        destination = self.destinations.get(str(event.move_destination).strip())
        if destination is None:
            yield None, None
            return
        found = self._retrieve(event.identifier)
        pairs = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in found}
        contexts = [build_context(cls, syntax) for cls, syntax in sorted(pairs)]
        yield (*destination, {"contexts": contexts})
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    def _on_store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.instances[str(ds.SOPInstanceUID)] = ds
        return 0x0000


def _nodelay(event) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _values(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _uid_match(query: Dataset, ds: Dataset, keyword: str) -> bool:
    wanted = _values(query.get(keyword))
    return not wanted or str(ds.get(keyword, "")) in wanted


def _date_match(query: Dataset, ds: Dataset) -> bool:
    wanted = str(query.get("StudyDate") or "")
    if not wanted:
        return True
    date = str(ds.get("StudyDate") or "")
    if not date:
        return False
    if "-" not in wanted:
        return date == wanted
    low, _, high = wanted.partition("-")
    return (not low or date >= low) and (not high or date <= high)


def _matches(query: Dataset, instances: list[Dataset]) -> Iterator[Dataset]:
    level = query.QueryRetrieveLevel
    keys = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
    groups: dict[str, list[Dataset]] = {}
    for ds in instances:
        if level != "STUDY" and not _uid_match(query, ds, "StudyInstanceUID"):
            continue
        if level == "IMAGE" and not _uid_match(query, ds, "SeriesInstanceUID"):
            continue
        if not (_uid_match(query, ds, keys[level]) and _date_match(query, ds)):
            continue
        groups.setdefault(str(ds.get(keys[level])), []).append(ds)
    for members in groups.values():
        yield _answer(query, members)


def _answer(query: Dataset, members: list[Dataset]) -> Dataset:
    first = members[0]
    answer = Dataset()
    answer.QueryRetrieveLevel = query.QueryRetrieveLevel
    computed = {
        "NumberOfStudyRelatedInstances": len(members),
        "NumberOfStudyRelatedSeries": len({str(m.SeriesInstanceUID) for m in members}),
        "NumberOfSeriesRelatedInstances": len(members),
        "ModalitiesInStudy": sorted({str(m.Modality) for m in members if "Modality" in m}),
    }
    for element in query:
        keyword = element.keyword
        if keyword == "QueryRetrieveLevel":
            continue
        if keyword in computed:
            setattr(answer, keyword, computed[keyword])
        elif keyword in first:
            answer[element.tag] = first[element.tag]
        else:
            answer[element.tag] = element
    return answer


@contextmanager
def running_pacs(**kwargs) -> Iterator[ScpPacs]:
    """Start an :class:`ScpPacs` (keyword arguments as for the class); stop it after."""
    pacs = ScpPacs(**kwargs)
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers; yields the port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


# --- datasets ---------------------------------------------------------------------------


def header_instance(
    study_uid: str,
    *,
    series_uid: str | None = None,
    study_date: str | None = "20240115",
    modality: str = "CT",
    patient_id: str = "PID0001",
    number: int = 1,
    syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A small CT-like instance without pixel data, enough for C-FIND tests."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "DOE^JANE"
    if study_date:
        ds.StudyDate = study_date
    ds.Modality = modality
    ds.InstanceNumber = number
    return ds


def archive(studies: int, *, instances: int = 2, first_day: int = 1) -> list[Dataset]:
    """``studies`` studies of ``instances`` header-only instances in one series each,
    dated one per day from 2024-01-``first_day`` on (wrapping over months)."""
    out = []
    for n in range(studies):
        study_uid, series_uid = generate_uid(), generate_uid()
        day = first_day - 1 + n
        date = f"2024{(day // 28) % 12 + 1:02d}{day % 28 + 1:02d}"
        for i in range(instances):
            out.append(
                header_instance(study_uid, series_uid=series_uid, study_date=date, number=i + 1)
            )
    return out


def encoded(ds: Dataset) -> bytes:
    """``ds`` written as a Part 10 file (bytes)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
