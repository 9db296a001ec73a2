"""Orthanc public identifiers, computed offline from DICOM identifiers.

Orthanc names every resource by the SHA-1 of its identifiers joined with ``|``, written
as 40 lowercase hex digits in five dash-separated groups of eight (checked against
Orthanc 1.10.1):

- patient: ``PatientID``
- study: ``PatientID|StudyInstanceUID``
- series: ``PatientID|StudyInstanceUID|SeriesInstanceUID``
- instance: ``PatientID|StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID``

So the same study has the same ID on a primary and on a standby restored from it, and
drctl can find a study in Orthanc's index or REST API from its UIDs alone. Values are
trimmed of the padding (spaces, NUL) DICOM allows, as Orthanc does before hashing.
"""

from __future__ import annotations

import hashlib


def _clean(value: str) -> str:
    return value.strip(" \x00")


def orthanc_hash(*parts: str) -> str:
    """Return the Orthanc-formatted SHA-1 of ``parts`` joined by ``|``."""
    digest = hashlib.sha1("|".join(_clean(p) for p in parts).encode("utf-8")).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def patient_id(patient: str) -> str:
    """Orthanc ID of the patient whose PatientID is ``patient`` (may be empty)."""
    return orthanc_hash(patient)


def study_id(patient: str, study_uid: str) -> str:
    """Orthanc ID of a study (Orthanc includes the PatientID in the hash)."""
    return orthanc_hash(patient, study_uid)


def series_id(patient: str, study_uid: str, series_uid: str) -> str:
    """Orthanc ID of a series."""
    return orthanc_hash(patient, study_uid, series_uid)


def instance_id(patient: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Orthanc ID of an instance."""
    return orthanc_hash(patient, study_uid, series_uid, sop_uid)


def is_orthanc_id(value: str) -> bool:
    """True when ``value`` has the shape of an Orthanc public ID."""
    groups = value.split("-")
    return (
        len(groups) == 5
        and all(len(group) == 8 for group in groups)
        and all(c in "0123456789abcdef" for c in value.replace("-", ""))
    )
