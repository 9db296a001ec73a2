"""DICOM errors specific to this package, refining the tree in :mod:`drctl.errors`."""

from __future__ import annotations

from typing import Any

from drctl.errors import DicomStatusError

CANCEL_STATUS = 0xFE00


class DicomTruncated(DicomStatusError):
    """The peer truncated a C-FIND (final status 0xFE00, e.g. Orthanc's
    ``LimitFindResults``) and the query could not be narrowed any further."""

    def __init__(self, message: str, **kw: Any):
        kw.setdefault(
            "hint",
            "raise the peer's result limit (Orthanc: LimitFindResults / LimitFindInstances) "
            "or query narrower ranges",
        )
        super().__init__(message, status=CANCEL_STATUS, **kw)


class DicomRetrieveFailed(DicomStatusError):
    """A C-GET or C-MOVE ended with a failure status. ``summary`` holds what had been
    transferred before it failed."""

    def __init__(self, message: str, *, status: int, summary: Any, **kw: Any):
        self.summary = summary
        super().__init__(message, status=status, **kw)
