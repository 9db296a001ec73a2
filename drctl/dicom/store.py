"""C-STORE of many files or datasets: plan the presentation contexts from what is to be
sent (one context per SOP class and transfer syntax pair), then send each item on the
association whose contexts carry its pair.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom import Association

from drctl.dicom import status as st
from drctl.dicom.association import Link, pause_reactor
from drctl.errors import DicomAborted


@dataclass(frozen=True)
class StoreItem:
    """One thing to send: a file path or a dataset, with its identity."""

    name: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    source: str | Dataset

    @property
    def pair(self) -> tuple[str, str]:
        return (self.sop_class_uid, self.transfer_syntax_uid)


@dataclass(frozen=True)
class StoreProblem:
    """An item the peer refused, stored with a warning, or that could not be sent."""

    name: str
    sop_instance_uid: str
    status: int | None
    reason: str


@dataclass(frozen=True)
class StoreSummary:
    """Outcome of a bulk C-STORE: how many were stored (warnings included), the items
    stored with a warning status, and the items not stored (status ``None``: not sent
    because the file was unreadable or the peer accepted no context for it)."""

    stored: int = 0
    warnings: tuple[StoreProblem, ...] = ()
    failed: tuple[StoreProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.failed or self.warnings)

    def merge(self, other: StoreSummary) -> StoreSummary:
        return StoreSummary(
            self.stored + other.stored,
            self.warnings + other.warnings,
            self.failed + other.failed,
        )


def file_items(paths: Iterable[str | os.PathLike]) -> tuple[list[StoreItem], StoreSummary]:
    """Read the File Meta of each path; return the sendable items and a summary listing
    the unreadable ones as failed."""
    items: list[StoreItem] = []
    bad: list[StoreProblem] = []
    for path in paths:
        name = os.fspath(path)
        try:
            meta = read_file_meta_info(name)
            items.append(
                StoreItem(
                    name=name,
                    sop_class_uid=str(meta.MediaStorageSOPClassUID),
                    sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
                    transfer_syntax_uid=str(meta.TransferSyntaxUID),
                    source=name,
                )
            )
        except Exception as exc:  # unreadable, not Part 10, File Meta incomplete
            bad.append(StoreProblem(name, "", None, f"not a readable DICOM file: {exc}"))
    return items, StoreSummary(failed=tuple(bad))


def dataset_items(datasets: Iterable[Dataset]) -> list[StoreItem]:
    """Items for datasets carrying SOPClassUID, SOPInstanceUID and
    ``file_meta.TransferSyntaxUID``; raises ``ValueError`` when one lacks them."""
    items = []
    for index, ds in enumerate(datasets):
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if not syntax or "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise ValueError(
                f"dataset #{index} needs SOPClassUID, SOPInstanceUID and "
                "file_meta.TransferSyntaxUID to be stored"
            )
        uid = str(ds.SOPInstanceUID)
        items.append(StoreItem(uid, str(ds.SOPClassUID), uid, str(syntax), ds))
    return items


def plan(items: Sequence[StoreItem], max_pairs: int) -> list[list[StoreItem]]:
    """Group items so that each group needs at most ``max_pairs`` distinct (SOP class,
    transfer syntax) pairs: one association per group, usually exactly one."""
    pairs = list(dict.fromkeys(item.pair for item in items))
    groups = []
    for start in range(0, len(pairs), max_pairs):
        chosen = set(pairs[start : start + max_pairs])
        groups.append([item for item in items if item.pair in chosen])
    return groups


def send(assoc: Association, link: Link, items: Sequence[StoreItem]) -> StoreSummary:
    """C-STORE each item on ``assoc`` and return the :class:`StoreSummary`.

    Raises :class:`DicomAborted`/:class:`DicomTimeout` when the association is lost
    (the items before it are stored; the rest are not).
    """
    stored = 0
    warnings: list[StoreProblem] = []
    failed: list[StoreProblem] = []
    for number, item in enumerate(items, start=1):
        if not assoc.is_established:
            raise DicomAborted(f"the association with {link.peer} ended during C-STORE")
        link.touch()
        pause_reactor(assoc)
        try:
            status = assoc.send_c_store(item.source, msg_id=number % 65535 or 1)
        except (ValueError, AttributeError) as exc:
            failed.append(StoreProblem(item.name, item.sop_instance_uid, None, str(exc)))
            continue
        if "Status" not in status:
            raise link.lost(f"C-STORE of {item.name}")
        code = int(status.Status)
        if code == st.SUCCESS:
            stored += 1
        elif st.is_warning(code):
            stored += 1
            warnings.append(_problem(item, code, status))
        else:
            failed.append(_problem(item, code, status))
    return StoreSummary(stored, tuple(warnings), tuple(failed))


def _problem(item: StoreItem, code: int, status: Dataset) -> StoreProblem:
    reason = st.describe(code, "C-STORE")
    comment = status.get("ErrorComment")
    if comment:
        reason += f": {comment}"
    return StoreProblem(item.name, item.sop_instance_uid, code, reason)
