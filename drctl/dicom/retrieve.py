"""C-GET and C-MOVE on an open session, and what they report.

A C-GET brings the instances back over the same association as C-STORE sub-operations;
drctl hands each one to the caller's callback as the encoded dataset the peer sent
(``event.request.DataSet.getvalue()``, no File Meta) with its transfer syntax, so a
digest can be computed without re-encoding (see :mod:`drctl.dicom.digest`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET_MODEL
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE_MODEL

from drctl.dicom import records as rec
from drctl.dicom import status as st
from drctl.dicom.errors import DicomRetrieveFailed
from drctl.dicom.exchange import Exchange

if TYPE_CHECKING:
    from drctl.dicom.session import DicomSession

log = logging.getLogger(__name__)

OnInstance = Callable[[str, str, str, bytes], None]
"""``on_instance(sop_instance_uid, sop_class_uid, transfer_syntax_uid, dataset_bytes)``"""

_REFUSED_OUT_OF_RESOURCES = 0xA700


@dataclass(frozen=True)
class GetSummary:
    """Outcome of a C-GET: instances handed to the callback, the peer's failed and
    warning sub-operation counts, requested SOP Instance UIDs that never arrived, and
    the peer's Failed SOP Instance UID List."""

    received: int = 0
    failed: int = 0
    warning: int = 0
    missing: tuple[str, ...] = ()
    failed_uids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing warned and nothing is missing."""
        return not (self.failed or self.warning or self.missing)

    def merge(self, other: GetSummary) -> GetSummary:
        return GetSummary(
            received=self.received + other.received,
            failed=self.failed + other.failed,
            warning=self.warning + other.warning,
            missing=self.missing + other.missing,
            failed_uids=self.failed_uids + other.failed_uids,
        )


@dataclass(frozen=True)
class MoveSummary:
    """Outcome of a C-MOVE as the peer counts its sub-operations."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.failed or self.warning)


@dataclass
class _Sink:
    """Receives the C-STORE sub-operations of a C-GET for the caller's callback."""

    on_instance: OnInstance
    received: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __call__(self, event: Any) -> int:
        request = event.request
        sop_uid = str(request.AffectedSOPInstanceUID)
        try:
            self.on_instance(
                sop_uid,
                str(request.AffectedSOPClassUID),
                str(event.context.transfer_syntax),
                request.DataSet.getvalue(),
            )
        except Exception as exc:  # re-raised to the caller after the C-GET
            self.errors.append(exc)
            return _REFUSED_OUT_OF_RESOURCES
        self.received.append(sop_uid)
        return st.SUCCESS


def get_instances(
    session: DicomSession,
    study_uid: str,
    series_uid: str | None,
    sop_uids: Sequence[str] | None,
    on_instance: OnInstance,
    *,
    batch: int,
) -> GetSummary:
    """C-GET instances on the session's association and return a :class:`GetSummary`.

    The level follows the arguments: IMAGE with ``sop_uids`` (sent as UID lists of up
    to ``batch``), SERIES with only ``series_uid``, STUDY with neither. The peer sends
    each instance on a storage context the session proposed (see
    :meth:`DicomClient.open`); one it cannot send counts as failed. Sub-operation
    failures and warnings (final status 0xB000) are counted in the summary, never
    dropped. Raises :class:`DicomRetrieveFailed` for a failure or cancel final status
    (its ``summary`` says what arrived), the errors of :func:`exchange`, and re-raises
    the first exception of ``on_instance`` once the C-GET has completed (the peer was
    told "out of resources" for that instance).
    """
    uids = list(dict.fromkeys(sop_uids or ()))
    chunks = [uids[i : i + batch] for i in range(0, len(uids), batch)] if uids else [[]]
    sink = _Sink(on_instance)
    link = session.link
    summary = GetSummary()
    link.store_sink = sink
    failure: DicomRetrieveFailed | None = None
    try:
        for chunk in chunks:
            summary, failure = _get_chunk(session, study_uid, series_uid, chunk, summary)
            if failure is not None:
                break
    finally:
        link.store_sink = None
    if sink.errors:  # the caller's own failure explains the rest
        for extra in sink.errors[1:]:
            log.warning("instance callback failed again: %s", extra)
        raise sink.errors[0] from failure
    if failure is not None:
        raise DicomRetrieveFailed(
            failure.message, status=failure.status or 0, summary=_finish(summary, sink, uids)
        )
    return _finish(summary, sink, uids)


def _get_chunk(
    session: DicomSession,
    study_uid: str,
    series_uid: str | None,
    chunk: list[str],
    summary: GetSummary,
) -> tuple[GetSummary, DicomRetrieveFailed | None]:
    """One C-GET request; returns the counts so far and the failure, if any."""
    identifier = rec.retrieve_identifier(study_uid, series_uid, chunk)
    operation = f"C-GET of {_what(identifier, chunk)}"
    result = session.request(
        operation,
        lambda mid: session.association.send_c_get(identifier, GET_MODEL, msg_id=mid),
    )
    _, failed, warning, failed_uids = _counts(result)
    summary = summary.merge(GetSummary(0, failed, warning, (), failed_uids))
    if result.status in (st.SUCCESS, st.SUBOPERATIONS_WARNING):
        return summary, None
    message = (
        f"{operation} on {session.peer} failed with status {st.describe(result.status, 'C-GET')}"
    )
    return summary, DicomRetrieveFailed(message, status=result.status, summary=summary)


def move_instances(
    session: DicomSession,
    destination_aet: str,
    study_uid: str,
    series_uid: str | None,
    sop_uids: Sequence[str] | None,
) -> MoveSummary:
    """Ask the peer to C-MOVE instances (level as for :func:`get_instances`) to
    ``destination_aet`` and return the peer's :class:`MoveSummary`.

    Raises :class:`DicomRetrieveFailed` for a failure or cancel final status (0xA801:
    the peer does not know the destination) and the errors of :func:`exchange`.
    """
    uids = list(dict.fromkeys(sop_uids or ()))
    identifier = rec.retrieve_identifier(study_uid, series_uid, uids)
    operation = f"C-MOVE of {_what(identifier, uids)} to {destination_aet}"
    result = session.request(
        operation,
        lambda mid: session.association.send_c_move(
            identifier, destination_aet, MOVE_MODEL, msg_id=mid
        ),
    )
    summary = MoveSummary(*_counts(result))
    if result.status not in (st.SUCCESS, st.SUBOPERATIONS_WARNING):
        raise DicomRetrieveFailed(
            f"{operation} on {session.peer} failed with status "
            f"{st.describe(result.status, 'C-MOVE')}",
            status=result.status,
            summary=summary,
        )
    return summary


def _what(identifier: Dataset, uids: Sequence[str]) -> str:
    if uids:
        return f"{len(uids)} instances"
    level = identifier.QueryRetrieveLevel.lower()
    return f"{level} {identifier.get('SeriesInstanceUID') or identifier.StudyInstanceUID}"


def _counts(result: Exchange) -> tuple[int, int, int, tuple[str, ...]]:
    """(completed, failed, warning, failed UIDs) from the final response."""
    final = result.final
    failed_uids = rec.texts(result.final_identifier, "FailedSOPInstanceUIDList")
    return (
        int(final.get("NumberOfCompletedSuboperations") or 0),
        int(final.get("NumberOfFailedSuboperations") or 0),
        int(final.get("NumberOfWarningSuboperations") or 0),
        failed_uids,
    )


def _finish(summary: GetSummary, sink: _Sink, uids: Sequence[str]) -> GetSummary:
    arrived = set(sink.received)
    return GetSummary(
        received=len(sink.received),
        failed=summary.failed,
        warning=summary.warning,
        missing=tuple(u for u in uids if u not in arrived),
        failed_uids=summary.failed_uids,
    )
