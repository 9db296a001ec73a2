"""Pure parts of drctl.dicom: date ranges, query builders, identifier parsing, status
words, TLS settings, C-STORE planning, argument checks."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from drctl.dicom import DicomClient, Peer, TlsSettings
from drctl.dicom import records as rec
from drctl.dicom.dates import DateRange
from drctl.dicom.status import describe, is_pending, is_warning
from drctl.dicom.store import StoreItem, plan
from drctl.errors import DicomMalformed, UsageError

# --- date ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("20240101-20240131", "20240101-20240131"),
        ("20240105", "20240105"),
        ("20240101-", "20240101-"),
        ("-20231231", "-20231231"),
        ("20240105-20240105", "20240105"),
    ],
)
def test_date_ranges_parse_and_render(text: str, query: str) -> None:
    assert DateRange.parse(text).query_text() == query


@pytest.mark.parametrize("text", ["", "-", "2024-01-01", "20240132", "20240201-20240101", "abc"])
def test_bad_date_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        DateRange.parse(text)


@given(
    st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)),
    st.integers(min_value=1, max_value=20000),
)
def test_halves_are_disjoint_and_cover_the_range(start: dt.date, days: int) -> None:
    span = DateRange(start, start + dt.timedelta(days=days))
    low, high = span.halves()
    assert low.start == span.start and high.end == span.end
    assert low.end + dt.timedelta(days=1) == high.start
    assert low.start <= low.end and high.start <= high.end


def test_open_ranges_split_and_stay_open() -> None:
    low, high = DateRange.parse("-20240101").halves()
    assert low.start is None and high.end == dt.date(2024, 1, 1)
    low, high = DateRange.parse("20240101-").halves()
    assert low.start == dt.date(2024, 1, 1) and high.end is None


def test_a_single_day_cannot_be_split() -> None:
    with pytest.raises(ValueError):
        DateRange.parse("20240101").halves()


# --- queries and parsing -----------------------------------------------------------------


def test_study_query_has_uid_list_and_return_keys() -> None:
    query = rec.study_query(study_uids=["1.2.3", "1.2.4"], extra_keys=["AccessionNumber"])
    assert query.QueryRetrieveLevel == "STUDY"
    assert list(query.StudyInstanceUID) == ["1.2.3", "1.2.4"]
    for keyword in ("StudyDate", "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                    "NumberOfStudyRelatedInstances", "AccessionNumber"):  # fmt: skip
        assert keyword in query


def test_unknown_extra_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="NotAKeyword"):
        rec.study_query(extra_keys=["NotAKeyword"])


@pytest.mark.parametrize(
    ("series", "sops", "level"),
    [
        (None, (), "STUDY"),
        ("1.2.3.1", (), "SERIES"),
        ("1.2.3.1", ("1.2.3.1.1", "1.2.3.1.2"), "IMAGE"),
    ],
)
def test_retrieve_identifier_levels(series, sops, level) -> None:
    identifier = rec.retrieve_identifier("1.2.3", series, sops)
    assert identifier.QueryRetrieveLevel == level


def test_image_level_retrieve_needs_a_series() -> None:
    with pytest.raises(ValueError):
        rec.retrieve_identifier("1.2.3", None, ["1.2.3.4"])


def _study_identifier(**values) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.StudyDate = "20240101"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedSeries = 2
    ds.NumberOfStudyRelatedInstances = 7
    ds.PatientID = "PID1"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_parse_study_reads_every_field() -> None:
    record = rec.parse_study(_study_identifier())
    assert record == rec.StudyRecord("1.2.3", "20240101", ("CT", "MR"), 2, 7, "PID1")
    assert "PID1" not in repr(record)  # patient IDs stay out of logs


def test_empty_values_are_none() -> None:
    record = rec.parse_study(_study_identifier(StudyDate="", NumberOfStudyRelatedSeries=None))
    assert record.study_date is None and record.series_count is None


@pytest.mark.parametrize(
    "identifier",
    [_study_identifier(StudyInstanceUID=""), _study_identifier(StudyInstanceUID=["1.2", "1.3"])],
    ids=["no-uid", "two-uids"],
)
def test_undecodable_study_identifiers_are_malformed(identifier: Dataset) -> None:
    with pytest.raises(DicomMalformed):
        rec.parse_study(identifier)


def test_parse_instance_needs_its_uids() -> None:
    ds = Dataset()
    ds.SeriesInstanceUID = "1.2.3.1"
    with pytest.raises(DicomMalformed, match="SOPInstanceUID"):
        rec.parse_instance(ds, "1.2.3")


# --- statuses -----------------------------------------------------------------------------


def test_status_words() -> None:
    assert describe(0xA702, "C-GET") == (
        "0xA702 (Failure: Refused: Out of resources, unable to perform sub-operations)"
    )
    assert describe(0xA801, "C-MOVE").endswith("Move destination unknown)")
    assert describe(0xFE00, "C-FIND") == "0xFE00 (Cancel)"
    assert is_pending(0xFF01) and not is_pending(0xFE00)
    assert is_warning(0xB000) and not is_warning(0x0000)


# --- peers and TLS ------------------------------------------------------------------------


def test_tls_password_is_never_shown(tmp_path) -> None:
    settings = TlsSettings(ca_file="/ca.pem", key_password="s3cret-word")
    assert "s3cret-word" not in repr(settings)
    assert "s3cret-word" not in repr(Peer("PACS", "pacs.example", 104, settings))
    assert str(Peer("PACS", "pacs.example", 104, settings)) == "PACS@dicom+tls://pacs.example:104"


def test_tls_with_a_missing_ca_file_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(UsageError, match="CA file"):
        TlsSettings(ca_file=str(tmp_path / "missing.pem")).context()


# --- C-STORE planning and arguments -------------------------------------------------------


def _item(n: int, pair: tuple[str, str]) -> StoreItem:
    return StoreItem(f"f{n}", pair[0], f"1.2.{n}", pair[1], f"/f{n}")


def test_store_plan_uses_one_association_up_to_128_pairs() -> None:
    pairs = [(f"1.2.840.{n}", "1.2.840.10008.1.2.1") for n in range(130)]
    items = [_item(n, pairs[n % 130]) for n in range(400)]
    assert len(plan(items[:128], 128)) == 1
    groups = plan(items, 128)
    assert len(groups) == 2
    assert sorted(i.name for g in groups for i in g) == sorted(i.name for i in items)
    assert all(len({i.pair for i in g}) <= 128 for g in groups)


@pytest.mark.parametrize(("aet", "timeout"), [("", 1.0), ("X" * 17, 1.0), ("DRCTL", 0)])
def test_client_arguments_are_checked(aet: str, timeout: float) -> None:
    with pytest.raises(ValueError):
        DicomClient(aet, timeout=timeout)
