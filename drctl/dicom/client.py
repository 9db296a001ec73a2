"""The DICOM client drctl uses to prove a PACS node: C-ECHO, bulk C-FIND, C-GET,
C-MOVE and C-STORE, each on as few associations as possible.

One ``timeout`` bounds every wait: TCP connect, association negotiation (ACSE), each
DIMSE response, and network inactivity; a stalled peer ends in :class:`DicomTimeout` or
:class:`DicomUnreachable`, never in a hang. Every association gets TCP_NODELAY (pynetdicom
leaves Nagle's algorithm on, which costs a delayed ACK per round trip) and is counted in :attr:`DicomClient.associations_opened`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from drctl.dicom import store
from drctl.dicom.association import (
    MAX_CONTEXTS,
    ContextRequest,
    Counter,
    Link,
    associate,
    close,
    pause_reactor,
)
from drctl.dicom.exchange import status_error
from drctl.dicom.peers import Peer
from drctl.dicom.retrieve import GetSummary, OnInstance
from drctl.dicom.session import DEFAULT_UID_BATCH, DicomSession
from drctl.dicom.store import StoreSummary
from drctl.errors import DrctlError

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# A C-GET association carries the Get context besides its storage contexts.
MAX_STORAGE_PAIRS_PER_GET = MAX_CONTEXTS - 1


@dataclass(frozen=True)
class InstanceRef:
    """An instance to retrieve, with the SOP class and transfer syntax it is stored in
    (a backup manifest knows them; :func:`drctl.dicom.digest.file_digest` gives them)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str

    @property
    def pair(self) -> tuple[str, str]:
        return (self.sop_class_uid, self.transfer_syntax_uid)


class DicomClient:
    """Talks to DICOM peers as ``calling_aet``; ``timeout`` (seconds) bounds every wait."""

    def __init__(self, calling_aet: str = "DRCTL", *, timeout: float = 30.0):
        if not 0 < len(calling_aet) <= 16:
            raise ValueError("an AE title has 1 to 16 characters")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.calling_aet = calling_aet
        self.timeout = timeout
        self._opened = Counter()

    @property
    def associations_opened(self) -> int:
        """Associations established by this client so far (all threads)."""
        return self._opened.value

    def echo(self, peer: Peer) -> float:
        """C-ECHO ``peer`` on a new association; return the C-ECHO round trip in seconds
        (association set-up excluded). Raises the association errors of
        :meth:`open`, :class:`DicomStatusError`, :class:`DicomTimeout`."""
        with self._association(peer, [_context(Verification)]) as (assoc, link):
            link.touch()
            pause_reactor(assoc)
            started = time.perf_counter()
            status = assoc.send_c_echo(msg_id=1)
            elapsed = time.perf_counter() - started
            if "Status" not in status:
                raise link.lost("C-ECHO")
            if int(status.Status) != 0:
                raise status_error("C-ECHO", link, int(status.Status))
            return elapsed

    @contextmanager
    def open(
        self,
        peer: Peer,
        *,
        find: bool = True,
        get: bool = False,
        move: bool = False,
        storage_contexts: Sequence[tuple[str, str]] = (),
    ) -> Iterator[DicomSession]:
        """Open ONE association with ``peer`` and yield a :class:`DicomSession` on it;
        release it on exit (abort it if the block failed outside drctl's errors).

        Proposes Study Root C-FIND (``find``), C-GET (``get``, implied by
        ``storage_contexts``) and C-MOVE (``move``). For C-GET, pass
        the ``(sop_class_uid, transfer_syntax_uid)`` pairs the instances are stored in:
        each becomes its own presentation context with the SCP role, so the peer can
        send every instance in its stored transfer syntax (a context offering several
        syntaxes lets the peer pick one and transcode). An association carries at most
        128 contexts: to retrieve instances needing more pairs, use :meth:`retrieve`,
        which splits them over several associations.

        Raises ``ValueError`` for more than 128 contexts (or none), :class:`DicomUnreachable`
        (refused, TLS failure, no answer to the request), :class:`DicomRejected` (with
        the peer's result, source and reason in words), :class:`DicomAborted`.
        """
        pairs = list(dict.fromkeys((str(c), str(t)) for c, t in storage_contexts))
        contexts = []
        if find:
            contexts.append(_context(StudyRootQueryRetrieveInformationModelFind))
        if get or pairs:
            contexts.append(_context(StudyRootQueryRetrieveInformationModelGet))
        if move:
            contexts.append(_context(StudyRootQueryRetrieveInformationModelMove))
        contexts.extend(ContextRequest(c, (t,), scp_role=True) for c, t in pairs)
        if len(contexts) > MAX_CONTEXTS:
            raise ValueError(
                f"{len(pairs)} storage pairs need {len(contexts)} presentation contexts, more "
                f"than the {MAX_CONTEXTS} of one association; use DicomClient.retrieve()"
            )
        with self._association(peer, contexts) as (assoc, link):
            yield DicomSession(assoc, link, _accepted_storage(assoc, pairs))

    def retrieve(
        self,
        peer: Peer,
        instances: Iterable[InstanceRef],
        on_instance: OnInstance,
        *,
        batch: int = DEFAULT_UID_BATCH,
    ) -> GetSummary:
        """C-GET ``instances`` at IMAGE level, each proposed in its own (SOP class,
        transfer syntax) pair, and return the merged :class:`GetSummary`.

        One association serves up to 127 distinct pairs (the Get context takes the
        128th); only when more pairs are needed are the instances split over several
        associations, grouped by pair. Raises what :meth:`open` and
        :meth:`DicomSession.get_instances` raise.
        """
        refs = list(instances)
        pairs = list(dict.fromkeys(ref.pair for ref in refs))
        summary = GetSummary()
        for start in range(0, len(pairs), MAX_STORAGE_PAIRS_PER_GET):
            chosen = pairs[start : start + MAX_STORAGE_PAIRS_PER_GET]
            wanted = set(chosen)
            by_series: dict[tuple[str, str], list[str]] = {}
            for ref in refs:
                if ref.pair in wanted:
                    key = (ref.study_uid, ref.series_uid)
                    by_series.setdefault(key, []).append(ref.sop_instance_uid)
            with self.open(peer, find=False, storage_contexts=chosen) as session:
                for (study_uid, series_uid), uids in by_series.items():
                    summary = summary.merge(
                        session.get_instances(study_uid, series_uid, uids, on_instance, batch=batch)
                    )
        return summary

    def store_files(self, peer: Peer, paths: Iterable[str | os.PathLike]) -> StoreSummary:
        """C-STORE DICOM Part 10 files to ``peer`` and return a :class:`StoreSummary`.

        Contexts come from the files' SOP classes and transfer syntaxes (one per pair);
        all files go over one association unless more than 128 pairs are needed.
        Unreadable files and per-file failure statuses are listed in the summary's
        ``failed``; raises the association errors of :meth:`open`, and
        :class:`DicomAborted`/:class:`DicomTimeout` if the association is lost.
        """
        items, summary = store.file_items(paths)
        return summary.merge(self._store(peer, items))

    def store_datasets(self, peer: Peer, datasets: Iterable[Dataset]) -> StoreSummary:
        """C-STORE datasets (each with SOPClassUID, SOPInstanceUID and
        ``file_meta.TransferSyntaxUID``) as :meth:`store_files` does files."""
        return self._store(peer, store.dataset_items(datasets))

    def _store(self, peer: Peer, items: list[store.StoreItem]) -> StoreSummary:
        summary = StoreSummary()
        for group in store.plan(items, MAX_CONTEXTS):
            contexts = [
                ContextRequest(c, (t,)) for c, t in dict.fromkeys(item.pair for item in group)
            ]
            with self._association(peer, contexts) as (assoc, link):
                summary = summary.merge(store.send(assoc, link, group))
        return summary

    @contextmanager
    def _association(
        self, peer: Peer, contexts: list[ContextRequest]
    ) -> Iterator[tuple[Association, Link]]:
        assoc, link = associate(
            peer, calling_aet=self.calling_aet, timeout=self.timeout, contexts=contexts
        )
        self._opened.increment()
        clean = False
        try:
            yield assoc, link
            clean = True
        except DrctlError:
            # drctl's errors are raised after every response was consumed (or the
            # association is gone already): a release is still proper.
            clean = True
            raise
        finally:
            close(assoc, abort=not clean)


def _context(abstract_syntax: str) -> ContextRequest:
    return ContextRequest(str(abstract_syntax), tuple(str(t) for t in UNCOMPRESSED))


def _accepted_storage(assoc: Association, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    wanted = set(pairs)
    accepted = []
    for cx in assoc.accepted_contexts:
        pair = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
        if pair in wanted and cx.as_scp:
            accepted.append(pair)
    return accepted
