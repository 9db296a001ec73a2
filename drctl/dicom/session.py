"""A session: one open association and the queries drctl makes on it.

Every request consumes all of its responses before the next one is sent. A C-FIND that
ends with status 0xFE00 (Orthanc's ``LimitFindResults``/``LimitFindInstances``
truncation, which ends with Cancel) is never taken as complete: the query is narrowed
and repeated, or :class:`~drctl.dicom.errors.DicomTruncated` is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND_MODEL

from drctl.dicom import records as rec
from drctl.dicom import retrieve
from drctl.dicom import status as st
from drctl.dicom.association import Link
from drctl.dicom.dates import DateRange
from drctl.dicom.errors import DicomTruncated
from drctl.dicom.exchange import Exchange, exchange, status_error
from drctl.dicom.records import InstanceRecord, SeriesRecord, StudyRecord
from drctl.dicom.retrieve import GetSummary, MoveSummary, OnInstance
from drctl.errors import DicomMalformed

log = logging.getLogger(__name__)

DEFAULT_UID_BATCH = 200


class DicomSession:
    """Queries and retrievals on one association (see :meth:`DicomClient.open`).

    Not thread-safe: one request at a time.
    """

    def __init__(
        self, assoc: Association, link: Link, storage_pairs: Collection[tuple[str, str]] = ()
    ):
        """``storage_pairs``: the (SOP class, transfer syntax) pairs the peer accepted
        for C-GET sub-operations on this association."""
        self._assoc = assoc
        self._link = link
        self.peer = link.peer
        self._message_id = 0
        self.storage_pairs = frozenset(storage_pairs)

    @property
    def is_open(self) -> bool:
        """True while the association is established."""
        return bool(self._assoc.is_established)

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 65535 + 1
        return self._message_id

    # --- C-FIND ---------------------------------------------------------------------

    def find_studies_by_uid(
        self,
        study_uids: Iterable[str],
        batch: int = DEFAULT_UID_BATCH,
        *,
        extra_keys: Sequence[str] = (),
    ) -> dict[str, StudyRecord]:
        """Return the peer's study records for ``study_uids``, keyed by study UID.

        Study-level C-FINDs with backslash-separated UID lists of up to ``batch`` UIDs,
        all on this association. A study the peer does not know is absent from the
        result: the caller, who knows every expected UID, compares. A truncated answer
        keeps what arrived and asks again for the rest in halves. Raises
        :class:`DicomTruncated` if a single-UID query is still truncated, and the
        errors of :func:`exchange`, :class:`DicomMalformed`, :class:`DicomStatusError`.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        wanted = list(dict.fromkeys(study_uids))
        found: dict[str, StudyRecord] = {}
        pending = [wanted[i : i + batch] for i in range(0, len(wanted), batch)]
        while pending:
            chunk = pending.pop()
            query = rec.study_query(study_uids=chunk, extra_keys=extra_keys)
            identifiers, truncated = self._find(query, f"C-FIND of {len(chunk)} studies")
            self._keep_studies(identifiers, set(chunk), extra_keys, found)
            if not truncated:
                continue
            rest = [uid for uid in chunk if uid not in found]
            if len(rest) == 1 and len(chunk) == 1:
                raise DicomTruncated(
                    f"{self.peer} truncated a C-FIND for the single study {rest[0]}"
                )
            if rest:
                log.debug("%s truncated a study C-FIND; %d UIDs asked again", self.peer, len(rest))
                half = (len(rest) + 1) // 2
                pending.extend(part for part in (rest[:half], rest[half:]) if part)
        return found

    def _keep_studies(
        self,
        identifiers: list[Dataset],
        asked: set[str],
        extra_keys: Sequence[str],
        found: dict[str, StudyRecord],
    ) -> None:
        for record in self._parsed(identifiers, rec.parse_study, extra_keys):
            if record.study_uid in asked:
                found[record.study_uid] = record
            else:
                log.warning(
                    "%s answered with study %s it was not asked for", self.peer, record.study_uid
                )

    def find_studies(
        self, date_range: str | None = None, *, extra_keys: Sequence[str] = ()
    ) -> list[StudyRecord]:
        """Return every study of the peer, or those whose StudyDate is in
        ``date_range`` (``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD``, ``YYYYMMDD-``, ``-YYYYMMDD``).

        Studies without a StudyDate match no range: only the wildcard query
        (``date_range=None``) lists them. A truncated range is split in halves and
        queried again; a truncated single day, or a truncated wildcard query (it cannot
        be split without losing undated studies), raises :class:`DicomTruncated`.
        ``extra_keys`` are further DICOM keywords returned in ``StudyRecord.extra``.
        """
        if date_range is None:
            query = rec.study_query(extra_keys=extra_keys)
            identifiers, truncated = self._find(query, "C-FIND of all studies")
            if truncated:
                raise DicomTruncated(
                    f"{self.peer} truncated the C-FIND of all studies",
                    hint="query by StudyDate ranges (they are split as needed), or raise "
                    "the peer's LimitFindResults",
                )
            return _by_date(self._parsed(identifiers, rec.parse_study, extra_keys))
        found: dict[str, StudyRecord] = {}
        pending = [DateRange.parse(date_range)]
        while pending:
            span = pending.pop()
            query = rec.study_query(study_date=span.query_text(), extra_keys=extra_keys)
            identifiers, truncated = self._find(query, f"C-FIND of studies {span.query_text()}")
            if not truncated:
                for record in self._parsed(identifiers, rec.parse_study, extra_keys):
                    found[record.study_uid] = record
            elif span.is_single_day:
                raise DicomTruncated(
                    f"{self.peer} truncated the C-FIND of studies on {span.query_text()} "
                    f"even for that single day ({len(identifiers)} returned)"
                )
            else:
                pending.extend(reversed(span.halves()))
        return _by_date(found.values())

    def find_series(self, study_uid: str) -> list[SeriesRecord]:
        """Return the series of ``study_uid``. Raises :class:`DicomTruncated` when the
        peer truncates the list (series cannot be split further), and the errors of
        :func:`exchange`."""
        identifiers, truncated = self._find(rec.series_query(study_uid), "C-FIND of series")
        if truncated:
            raise DicomTruncated(f"{self.peer} truncated the series list of study {study_uid}")
        return self._parsed(identifiers, rec.parse_series, study_uid)

    def find_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        """Return the instances of a study (or of one of its series).

        A truncated study-wide answer is asked again series by series; a truncated
        series raises :class:`DicomTruncated`.
        """
        query = rec.instance_query(study_uid, series_uid)
        identifiers, truncated = self._find(query, "C-FIND of instances")
        if not truncated:
            return self._parsed(identifiers, rec.parse_instance, study_uid)
        if series_uid:
            raise DicomTruncated(
                f"{self.peer} truncated the instance list of series {series_uid} "
                f"({len(identifiers)} returned)"
            )
        instances: list[InstanceRecord] = []
        for series in self.find_series(study_uid):
            instances.extend(self.find_instances(study_uid, series.series_uid))
        return instances

    def _parsed(self, identifiers: list[Dataset], parse: Callable, *args: Any) -> list:
        """``parse(identifier, *args)`` for each identifier; a :class:`DicomMalformed`
        names the peer."""
        try:
            return [parse(identifier, *args) for identifier in identifiers]
        except DicomMalformed as exc:
            raise DicomMalformed(
                f"{self.peer} returned an identifier drctl cannot decode: {exc.message}",
                hint="the peer's index may be damaged; check the study on the peer",
            ) from exc

    def _find(self, query: Dataset, operation: str) -> tuple[list[Dataset], bool]:
        """Run one C-FIND; return (identifiers, truncated)."""
        result = exchange(
            self._assoc,
            self._link,
            operation,
            lambda: self._assoc.send_c_find(query, FIND_MODEL, msg_id=self.next_message_id()),
        )
        if result.undecodable:
            raise DicomMalformed(f"{self.peer} returned undecodable identifiers to {operation}")
        if result.status == st.SUCCESS:
            return result.identifiers, False
        if result.status == st.CANCEL:
            return result.identifiers, True
        raise status_error(operation, self._link, result.status)

    # --- C-GET / C-MOVE -------------------------------------------------------------

    def get_instances(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uids: Sequence[str] | None,
        on_instance: OnInstance,
        *,
        batch: int = DEFAULT_UID_BATCH,
    ) -> GetSummary:
        """Retrieve instances by C-GET on this association; see
        :func:`drctl.dicom.retrieve.get_instances` for the level, the callback, the
        summary and the errors."""
        return retrieve.get_instances(
            self, study_uid, series_uid, sop_uids, on_instance, batch=batch
        )

    def move_instances(
        self,
        destination_aet: str,
        study_uid: str,
        series_uid: str | None = None,
        sop_uids: Sequence[str] | None = None,
    ) -> MoveSummary:
        """Ask the peer to C-MOVE instances to ``destination_aet``; see
        :func:`drctl.dicom.retrieve.move_instances`."""
        return retrieve.move_instances(self, destination_aet, study_uid, series_uid, sop_uids)

    def request(self, operation: str, send: Callable[[int], Iterator[Any]]) -> Exchange:
        """Run one DIMSE request ``send(message_id)`` on this association and return
        every response (used by :mod:`drctl.dicom.retrieve`); raises as
        :func:`exchange` does."""
        return exchange(self._assoc, self._link, operation, lambda: send(self.next_message_id()))

    @property
    def association(self) -> Association:
        return self._assoc

    @property
    def link(self) -> Link:
        return self._link


def _by_date(records: Iterable[StudyRecord]) -> list[StudyRecord]:
    return sorted(records, key=lambda r: (r.study_date or "", r.study_uid))
