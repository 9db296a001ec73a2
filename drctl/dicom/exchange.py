"""Sending one DIMSE request and consuming every response before the next request.

pynetdicom yields ``(status, identifier)`` pairs; an empty status means no response
came (peer abort, connection lost, or DIMSE timeout). :func:`exchange` reads them all
and returns an :class:`Exchange`; it raises only when the association is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import Association

from drctl.dicom import status as st
from drctl.dicom.association import Link, pause_reactor
from drctl.errors import DicomAborted, DicomError, DicomRejected, DicomStatusError


@dataclass
class Exchange:
    """Every response of one request: pending identifiers, the final status dataset,
    and whether some pending identifiers could not be decoded (``undecodable`` > 0)."""

    identifiers: list[Dataset] = field(default_factory=list)
    undecodable: int = 0
    final: Dataset | None = None
    final_identifier: Dataset | None = None
    last_pending: Dataset | None = None

    @property
    def status(self) -> int:
        return int(self.final.Status) if self.final is not None else -1


def exchange(
    assoc: Association,
    link: Link,
    operation: str,
    send: Callable[[], Iterator[tuple[Dataset, Dataset | None]]],
) -> Exchange:
    """Send a request with ``send`` and consume all of its responses.

    Raises :class:`DicomRejected` when the peer accepted no presentation context for
    the request, :class:`DicomAborted` when the association is no longer established,
    and :class:`DicomAborted`/:class:`DicomTimeout` when the responses stop.
    """
    if not assoc.is_established:
        raise DicomAborted(
            f"the association with {link.peer} is closed; cannot {operation}",
            hint="it was aborted, or idle longer than the timeout; open a new session",
        )
    link.touch()
    pause_reactor(assoc)
    try:
        responses = send()
    except ValueError as exc:
        if "presentation context" in str(exc):
            raise DicomRejected(
                f"{link.peer} did not accept the presentation context for {operation}",
                hint="the peer does not support this service or transfer syntax",
            ) from exc
        raise
    except RuntimeError as exc:
        raise DicomAborted(f"the association with {link.peer} ended before {operation}") from exc
    result = Exchange()
    for status, identifier in responses:
        if "Status" not in status:
            raise link.lost(operation)
        link.touch()
        code = int(status.Status)
        if st.is_pending(code):
            result.last_pending = status
            if identifier is None:
                result.undecodable += 1
            else:
                result.identifiers.append(identifier)
            continue
        result.final = status
        result.final_identifier = identifier
    if result.final is None:
        raise link.lost(operation)
    return result


def status_error(operation: str, link: Link, code: int) -> DicomError:
    """A :class:`DicomStatusError` naming the operation, the peer and the status."""
    service = operation.split()[0]
    return DicomStatusError(
        f"{operation} on {link.peer} failed with status {st.describe(code, service)}",
        status=code,
    )
