"""What drctl asks a PACS (C-FIND identifiers) and what it gets back (typed records).

Query builders are pure functions; parsers turn a response identifier into a frozen
record or raise :class:`DicomMalformed` when a value cannot be decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from drctl.errors import DicomMalformed

UID_SEPARATOR = "\\"
# Values read straight from the undecoded bytes (a bulk C-FIND parses thousands of
# identifiers; pydicom's full conversion was most of drctl's own time per study):
# printable ASCII in these VRs decodes the same in every character set.
_RAW_VRS = frozenset({"AE", "CS", "DA", "IS", "LO", "SH", "UI"})
_PLAIN_ASCII = re.compile(rb"[\x20-\x7e]*\x00?")
_DIGITS = re.compile(r"[0-9]+")
_SLOW = object()  # not plain: pydicom converts the value


@dataclass(frozen=True)
class StudyRecord:
    """One study as a PACS's study-level C-FIND describes it (from its index).

    ``patient_id`` is returned so the caller can hash it; it is kept out of ``repr``.
    ``extra`` holds the caller's extra return keys (keyword -> text value).
    """

    study_uid: str
    study_date: str | None
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None
    patient_id: str | None = field(default=None, repr=False)
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SeriesRecord:
    study_uid: str
    series_uid: str
    modality: str | None
    series_number: int | None
    instance_count: int | None


@dataclass(frozen=True)
class InstanceRecord:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None
    instance_number: int | None


def study_query(
    *,
    study_uids: Sequence[str] = (),
    study_date: str = "",
    extra_keys: Sequence[str] = (),
) -> Dataset:
    """Return a study-level identifier matching ``study_uids`` (a UID list; empty means
    all) and ``study_date`` (a DICOM date or range; empty means all)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = UID_SEPARATOR.join(study_uids)
    ds.StudyDate = study_date
    ds.PatientID = ""
    ds.ModalitiesInStudy = ""
    ds.NumberOfStudyRelatedSeries = None
    ds.NumberOfStudyRelatedInstances = None
    _add_return_keys(ds, extra_keys)
    return ds


def series_query(study_uid: str) -> Dataset:
    """Return a series-level identifier listing the series of ``study_uid``."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    ds.SeriesNumber = None
    ds.NumberOfSeriesRelatedInstances = None
    return ds


def instance_query(study_uid: str, series_uid: str | None = None) -> Dataset:
    """Return an image-level identifier listing the instances of a study or series."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or ""
    ds.SOPInstanceUID = ""
    ds.SOPClassUID = ""
    ds.InstanceNumber = None
    return ds


def retrieve_identifier(
    study_uid: str, series_uid: str | None = None, sop_uids: Sequence[str] = ()
) -> Dataset:
    """Return a C-GET/C-MOVE identifier at the level the arguments imply: IMAGE with
    ``sop_uids`` (which need ``series_uid``), SERIES with ``series_uid``, else STUDY."""
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    if sop_uids:
        if not series_uid:
            raise ValueError("an IMAGE-level retrieve needs the series UID")
        ds.QueryRetrieveLevel = "IMAGE"
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = UID_SEPARATOR.join(sop_uids)
    elif series_uid:
        ds.QueryRetrieveLevel = "SERIES"
        ds.SeriesInstanceUID = series_uid
    else:
        ds.QueryRetrieveLevel = "STUDY"
    return ds


def _add_return_keys(ds: Dataset, keywords: Sequence[str]) -> None:
    for keyword in keywords:
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")
        if keyword not in ds:
            setattr(ds, keyword, None)


def parse_study(identifier: Dataset, extra_keys: Sequence[str] = ()) -> StudyRecord:
    """Return the :class:`StudyRecord` of a study-level response identifier.

    Raises :class:`DicomMalformed` when the study UID is missing or a value cannot be
    decoded.
    """
    with _decoding("study"):
        return StudyRecord(
            study_uid=_required_uid(identifier, "StudyInstanceUID"),
            study_date=_text(identifier, "StudyDate"),
            modalities=texts(identifier, "ModalitiesInStudy"),
            series_count=_integer(identifier, "NumberOfStudyRelatedSeries"),
            instance_count=_integer(identifier, "NumberOfStudyRelatedInstances"),
            patient_id=_text(identifier, "PatientID"),
            extra={k: v for k in extra_keys if (v := _joined(identifier, k)) is not None},
        )


def parse_series(identifier: Dataset, study_uid: str) -> SeriesRecord:
    """Return the :class:`SeriesRecord` of a series-level response identifier."""
    with _decoding("series"):
        return SeriesRecord(
            study_uid=_text(identifier, "StudyInstanceUID") or study_uid,
            series_uid=_required_uid(identifier, "SeriesInstanceUID"),
            modality=_text(identifier, "Modality"),
            series_number=_integer(identifier, "SeriesNumber"),
            instance_count=_integer(identifier, "NumberOfSeriesRelatedInstances"),
        )


def parse_instance(identifier: Dataset, study_uid: str) -> InstanceRecord:
    """Return the :class:`InstanceRecord` of an image-level response identifier."""
    with _decoding("instance"):
        return InstanceRecord(
            study_uid=_text(identifier, "StudyInstanceUID") or study_uid,
            series_uid=_required_uid(identifier, "SeriesInstanceUID"),
            sop_instance_uid=_required_uid(identifier, "SOPInstanceUID"),
            sop_class_uid=_text(identifier, "SOPClassUID"),
            instance_number=_integer(identifier, "InstanceNumber"),
        )


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn any decoding failure inside the block into :class:`DicomMalformed`."""
    try:
        yield
    except DicomMalformed:
        raise
    except Exception as exc:  # pydicom decodes lazily and raises many types
        raise DicomMalformed(f"{what} identifier: {exc}") from exc


def _raw_text(ds: Dataset, keyword: str) -> str | None | object:
    """The text of an undecoded plain-ASCII element as pydicom would give it, padding
    removed (None when absent or empty); ``_SLOW`` for anything else."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return _SLOW
    elem = ds._dict.get(tag)  # noqa: SLF001 - the raw element, without converting it
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
        return _SLOW
    try:
        vr = elem.VR or dictionary_VR(tag)
    except KeyError:
        return _SLOW
    if vr not in _RAW_VRS or not _PLAIN_ASCII.fullmatch(elem.value):
        return _SLOW
    return elem.value.decode("ascii").rstrip("\0 ").strip() or None


def _text(ds: Dataset, keyword: str) -> str | None:
    fast = _raw_text(ds, keyword)
    if fast is None or (fast is not _SLOW and UID_SEPARATOR not in fast):  # type: ignore[operator]
        return fast  # type: ignore[return-value]
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list):
        raise DicomMalformed(f"{keyword} has several values where one was expected")
    if isinstance(value, bytes):
        raise DicomMalformed(f"{keyword} holds undecodable bytes")
    return str(value).strip()


def _required_uid(ds: Dataset, keyword: str) -> str:
    uid = _text(ds, keyword)
    if not uid:
        raise DicomMalformed(f"no {keyword} in the identifier")
    return uid


def texts(ds: Dataset | None, keyword: str) -> tuple[str, ...]:
    """The non-empty text values of ``keyword`` in ``ds`` (none when absent)."""
    if ds is None:
        return ()
    fast = _raw_text(ds, keyword)
    if fast is None:
        return ()
    if fast is not _SLOW:
        parts = (part.rstrip("\0 ").strip() for part in fast.split(UID_SEPARATOR))  # type: ignore[attr-defined]
        return tuple(part for part in parts if part)
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    values = value if isinstance(value, MultiValue | list) else [value]
    return tuple(str(v).strip() for v in values if str(v).strip())


def _joined(ds: Dataset, keyword: str) -> str | None:
    values = texts(ds, keyword)
    return UID_SEPARATOR.join(values) if values else None


def _integer(ds: Dataset, keyword: str) -> int | None:
    fast = _raw_text(ds, keyword)
    if fast is None:
        return None
    if fast is not _SLOW and _DIGITS.fullmatch(fast):  # type: ignore[arg-type]
        return int(fast)  # type: ignore[arg-type]
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise DicomMalformed(f"{keyword} is not an integer: {str(value)[:40]!r}") from None
