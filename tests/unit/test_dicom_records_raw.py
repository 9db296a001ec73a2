"""drctl.dicom.records reads plain-ASCII values straight from the undecoded bytes (a bulk
C-FIND parses thousands of identifiers); every record and every error must be what
pydicom's full conversion gives, in explicit and implicit VR."""

from __future__ import annotations

import itertools
import struct
from io import BytesIO

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from drctl.dicom import records as rec
from drctl.errors import DicomMalformed

UIDS = ["1.2.3", "1.2.3\0", " 1.2.840.10008 ", "", "1.2\\1.3", "1.2.3 \0"]
COUNTS = ["12", " 7 ", "", "1.5", "x", "1\\2", "0012", "+3"]
DATES = ["20240101", "", "2024", " 20240102"]
MODALITIES = ["CT", "CT\\MR", "CT\\\\MR", " CT \\ MR ", "", "OT\0"]
PATIENTS = ["PID 1", "", "Müller", "A\\B"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _raw(implicit: bool, **values: str) -> Dataset:
    """An identifier as pynetdicom hands it over: the bytes a peer sends (written here
    element by element, invalid values included), read back undecoded."""
    values = {"SpecificCharacterSet": "ISO_IR 100", "QueryRetrieveLevel": "STUDY", **values}
    elements = sorted((tag_for_keyword(k), k, v) for k, v in values.items())
    data = b"".join(
        _element(tag, dictionary_VR(tag), value, implicit) for tag, _, value in elements
    )
    return read_dataset(BytesIO(data), implicit, True)


def _element(tag: int, vr: str, value: str, implicit: bool) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<L", len(raw)) + raw
    return head + vr.encode() + struct.pack("<H", len(raw)) + raw


def _outcome(parse, ds: Dataset, *args):
    try:
        return parse(ds, *args)
    except DicomMalformed:
        return "malformed"


def _reference(monkeypatch, parse, ds: Dataset, *args):
    with monkeypatch.context() as patch:
        patch.setattr(rec, "_raw_text", lambda _ds, _keyword: rec._SLOW)
        return _outcome(parse, ds, *args)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_study_records_match_the_full_conversion(monkeypatch, implicit: bool) -> None:
    cases = itertools.product(UIDS, COUNTS, DATES, MODALITIES, PATIENTS[:2])
    for uid, count, date, modalities, patient in cases:
        values = {
            "StudyInstanceUID": uid,
            "NumberOfStudyRelatedSeries": count,
            "NumberOfStudyRelatedInstances": count,
            "StudyDate": date,
            "ModalitiesInStudy": modalities,
            "PatientID": patient,
        }
        fast = _outcome(rec.parse_study, _raw(implicit, **values))
        slow = _reference(monkeypatch, rec.parse_study, _raw(implicit, **values))
        assert fast == slow, values


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_non_ascii_and_extra_keys_match_the_full_conversion(monkeypatch, implicit) -> None:
    for patient, extra in itertools.product(PATIENTS, ["DOE^JANE", "Müller^Zoë", ""]):
        values = {
            "StudyInstanceUID": "1.2.3",
            "PatientID": patient,
            "PatientName": extra,
            "AccessionNumber": "ACC 1",
        }
        keys = ["PatientName", "AccessionNumber"]
        fast = _outcome(rec.parse_study, _raw(implicit, **values), keys)
        slow = _reference(monkeypatch, rec.parse_study, _raw(implicit, **values), keys)
        assert fast == slow and (fast == "malformed" or fast.extra == slow.extra), values


def test_instance_and_series_records_match_the_full_conversion(monkeypatch) -> None:
    for uid, number in itertools.product(UIDS, COUNTS):
        values = {
            "SeriesInstanceUID": uid or "1.9",
            "SOPInstanceUID": uid,
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2\0",
            "InstanceNumber": number,
            "Modality": "CT ",
            "SeriesNumber": number,
            "NumberOfSeriesRelatedInstances": number,
        }
        for parse in (rec.parse_instance, rec.parse_series):
            fast = _outcome(parse, _raw(False, **values), "1.2.3")
            slow = _reference(monkeypatch, parse, _raw(False, **values), "1.2.3")
            assert fast == slow, values


def test_plain_values_are_read_without_pydicom_conversion() -> None:
    ds = _raw(True, StudyInstanceUID="1.2.3\0", NumberOfStudyRelatedInstances="12 ")
    assert rec._raw_text(ds, "StudyInstanceUID") == "1.2.3"
    assert rec._raw_text(ds, "NumberOfStudyRelatedInstances") == "12"
    assert rec._raw_text(ds, "PatientID") is None
    rec.parse_study(ds)
    assert all(type(elem).__name__ == "RawDataElement" for elem in ds._dict.values())
