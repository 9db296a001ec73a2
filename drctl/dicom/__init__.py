"""drctl's DICOM client adapter: C-ECHO, bulk C-FIND, C-GET/C-MOVE, C-STORE over
pynetdicom, and a content digest that survives transfer-syntax changes.

Public API::

    client = DicomClient("DRCTL", timeout=30)
    client.echo(peer)
    with client.open(peer) as session:
        session.find_studies_by_uid(uids)
"""

from drctl.dicom.client import DicomClient, InstanceRef
from drctl.dicom.digest import FileDigest, content_digest, file_digest
from drctl.dicom.errors import DicomRetrieveFailed, DicomTruncated
from drctl.dicom.peers import Peer, TlsSettings
from drctl.dicom.records import InstanceRecord, SeriesRecord, StudyRecord
from drctl.dicom.retrieve import GetSummary, MoveSummary
from drctl.dicom.session import DicomSession
from drctl.dicom.store import StoreProblem, StoreSummary

__all__ = [
    "DicomClient",
    "DicomRetrieveFailed",
    "DicomSession",
    "DicomTruncated",
    "FileDigest",
    "GetSummary",
    "InstanceRecord",
    "InstanceRef",
    "MoveSummary",
    "Peer",
    "SeriesRecord",
    "StoreProblem",
    "StoreSummary",
    "StudyRecord",
    "TlsSettings",
    "content_digest",
    "file_digest",
]
