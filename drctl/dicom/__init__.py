"""drctl's DICOM client adapter: C-ECHO, bulk C-FIND, C-GET/C-MOVE, C-STORE over
pynetdicom, and a content digest that survives transfer-syntax changes.

Public API::

    client = DicomClient("DRCTL", timeout=30)
    client.echo(peer)
    with client.open(peer) as session:
        session.find_studies_by_uid(uids)

Names are imported on first use (pynetdicom takes a third of a second to import, and
commands that never speak DICOM should not pay for it).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DicomClient": "client", "InstanceRef": "client",
    "FileDigest": "digest", "content_digest": "digest", "file_digest": "digest",
    "DicomRetrieveFailed": "errors", "DicomTruncated": "errors",
    "Peer": "peers", "TlsSettings": "peers",
    "InstanceRecord": "records", "SeriesRecord": "records", "StudyRecord": "records",
    "GetSummary": "retrieve", "MoveSummary": "retrieve",
    "DicomSession": "session",
    "StoreProblem": "store", "StoreSummary": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'drctl.dicom' has no attribute {name!r}")
    return getattr(importlib.import_module(f"drctl.dicom.{module}"), name)
