"""Opening one association: presentation contexts, SCP/SCU role selection, TCP_NODELAY,
timeouts, and the translation of every way it can fail into a typed error.

A :class:`Link` is the per-association state that pynetdicom's event handlers write to
(socket options, the last PDU seen, an A-ABORT from the peer, C-STORE requests during a
C-GET). It lets the session tell a peer abort from our own DIMSE timeout after
pynetdicom reports only "no response".
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, Association, build_role, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.pdu import A_ABORT_RQ

from drctl.dicom.peers import Peer
from drctl.errors import DicomAborted, DicomError, DicomRejected, DicomTimeout, DicomUnreachable

log = logging.getLogger(__name__)

# Identifiers carry patient IDs (and names, when a caller asks for them): pynetdicom
# would log every one at INFO. drctl never logs patient data.
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False

MAX_CONTEXTS = 128  # presentation context IDs are the odd numbers 1..255

StoreSink = Callable[[Any], int]


@dataclass(frozen=True)
class ContextRequest:
    """One presentation context to propose: an abstract syntax, its transfer syntaxes
    and whether drctl asks to act as SCP for it (storage contexts of a C-GET)."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scp_role: bool = False


class Link:
    """What the event handlers of one association observed."""

    def __init__(self, peer: Peer, timeout: float):
        self.peer = peer
        self.timeout = timeout
        self.connected = False
        self.peer_aborted = False
        self.created = self.last_activity = time.monotonic()
        self.store_sink: StoreSink | None = None

    def handlers(self) -> list[tuple[Any, Callable]]:
        """The (event, handler) pairs to bind when associating."""
        return [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_PDU_RECV, self._on_pdu_recv),
            (evt.EVT_C_STORE, self._on_c_store),
        ]

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def _on_conn_open(self, event: Any) -> None:
        self.connected = True
        # pynetdicom leaves Nagle on: each request/response round trip would then wait
        # for a delayed ACK (field notes: 48.8 -> 7.2 ms per C-FIND against Orthanc).
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_pdu_recv(self, event: Any) -> None:
        self.last_activity = time.monotonic()
        if isinstance(event.pdu, A_ABORT_RQ):
            self.peer_aborted = True

    def _on_c_store(self, event: Any) -> int:
        sink = self.store_sink
        if sink is None:
            log.warning("%s sent a C-STORE outside a C-GET; refused", self.peer)
            return 0xA700  # Refused: out of resources
        return sink(event)

    def lost(self, operation: str) -> DicomError:
        """The error for a request that ended without a response: the peer aborted, the
        connection dropped, or nothing arrived within the timeout (pynetdicom aborts
        the association itself in that case)."""
        if self.peer_aborted:
            return DicomAborted(f"{self.peer} aborted the association during {operation}")
        idle = time.monotonic() - self.last_activity
        if idle >= self.timeout * 0.9:
            return DicomTimeout(
                f"{self.peer} did not answer {operation} within {self.timeout:g}s",
                hint="the peer may be overloaded or hung; the association was aborted",
            )
        return DicomAborted(f"{self.peer} closed the connection during {operation}")


def associate(
    peer: Peer,
    *,
    calling_aet: str,
    timeout: float,
    contexts: Sequence[ContextRequest],
) -> tuple[Association, Link]:
    """Open one association with ``peer`` proposing ``contexts`` and return it with its
    :class:`Link`.

    Raises ``ValueError`` for more than 128 contexts, :class:`DicomUnreachable` when the
    TCP/TLS connection fails or the peer does not answer the request within
    ``timeout``, :class:`DicomRejected` (result, source and reason in words) and
    :class:`DicomAborted`.
    """
    if not contexts:
        raise ValueError("an association needs at least one presentation context")
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} presentation contexts; at most {MAX_CONTEXTS}")
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    roles: dict[str, Any] = {}
    for cx in contexts:
        ae.add_requested_context(cx.abstract_syntax, list(cx.transfer_syntaxes))
        if cx.scp_role and cx.abstract_syntax not in roles:
            roles[cx.abstract_syntax] = build_role(cx.abstract_syntax, scp_role=True)
    link = Link(peer, timeout)
    tls_args = None
    if peer.tls is not None:
        tls_args = (peer.tls.context(), peer.host if peer.tls.check_hostname else None)
    try:
        assoc = ae.associate(
            peer.host,
            peer.port,
            ae_title=peer.aet,
            ext_neg=list(roles.values()) or None,
            evt_handlers=link.handlers(),
            tls_args=tls_args,
        )
    except BaseException:  # Ctrl-C while associating: leave no connection thread behind
        for pending in ae.active_associations:
            _end_threads(pending)
        raise
    if not assoc.is_established:
        raise _refusal(assoc, link)
    return assoc, link


def _refusal(assoc: Association, link: Link) -> DicomError:
    peer = link.peer
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        words = f"{rj.result_str}, by the {rj.source_str}: {rj.reason_str}"
        return DicomRejected(
            f"{peer} rejected the association from {assoc.requestor.ae_title} ({words})",
            hint="check that the peer declares drctl's AE title (Orthanc: DicomModalities) "
            "and the called AE title is right",
        )
    if link.peer_aborted:
        return DicomAborted(f"{peer} aborted the association request")
    if not link.connected:
        if peer.tls:
            return DicomUnreachable(
                f"cannot connect or complete the TLS handshake with {peer}",
                hint="check that the node runs, the port, and that the CA file verifies "
                "the node's certificate",
            )
        return DicomUnreachable(
            f"cannot connect to {peer}", hint="check that the node runs and the port is right"
        )
    if time.monotonic() - link.created < link.timeout * 0.9:
        return DicomUnreachable(
            f"{peer} closed the connection without answering the association request",
            hint="the node may require DICOM TLS or a client certificate it trusts, "
            "or refuse connections from this address",
        )
    return DicomUnreachable(
        f"{peer} accepted the connection but did not answer the association request "
        f"within {link.timeout:g}s",
        hint="the port may belong to another service, or the node is hung",
    )


def close(assoc: Association, *, abort: bool) -> None:
    """Release ``assoc`` (or abort it when ``abort``); never raises, except that a
    Ctrl-C during the release still ends the association's threads and goes on."""
    try:
        if assoc.is_established:
            if abort:
                assoc.abort()
            else:
                assoc.release()
    except Exception:  # closing must not mask the caller's outcome
        log.debug("error while closing an association", exc_info=True)
    except BaseException:
        _end_threads(assoc)
        raise


def _end_threads(assoc: Association) -> None:
    """Stop an association's threads without waiting for the peer. pynetdicom's own
    ``kill()`` waits until the connection is idle; interrupted there (Ctrl-C), it leaves
    the non-daemon DUL thread running and the interpreter can never exit."""
    with contextlib.suppress(Exception):
        assoc._kill = True
        assoc._reactor_checkpoint.set()
        assoc.dul.kill_dul()


def _end_all_threads() -> None:
    """At interpreter shutdown (before non-daemon threads are joined): end every DUL
    thread still running, whatever left it behind."""
    from pynetdicom.dul import DULServiceProvider

    for thread in threading.enumerate():
        if isinstance(thread, DULServiceProvider) and thread.is_alive():
            with contextlib.suppress(Exception):
                thread.kill_dul()


# threading's own shutdown hook runs before non-daemon threads are joined (atexit runs
# after, too late); drctl exits promptly even when Ctrl-C cut an association short.
with contextlib.suppress(AttributeError):
    threading._register_atexit(_end_all_threads)  # type: ignore[attr-defined]


REACTOR_PAUSE_TIMEOUT = 2.0


def pause_reactor(assoc: Association, timeout: float = REACTOR_PAUSE_TIMEOUT) -> bool:
    """Block pynetdicom's reactor thread before a request is sent; True once it waits.

    pynetdicom 3.0 pauses its reactor for a request by clearing an event and waiting
    until the reactor says ``_is_paused``; but the flag stays True for a moment after the
    reactor woke from the previous pause. A request sent in that window has its response
    taken by the reactor ("Received unexpected C-FIND service message"): a C-FIND answer
    then silently lacks an identifier or never ends (measured: 1 in ~8 associations doing
    back-to-back truncated C-FINDs). Waiting until the reactor thread is really blocked
    on the event (a waiter on its condition) closes the window. Never raises.
    """
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    condition = getattr(checkpoint, "_cond", None)
    if checkpoint is None or condition is None or not hasattr(condition, "_waiters"):
        return False  # another pynetdicom: its own pause has to do
    checkpoint.clear()
    deadline = time.monotonic() + timeout
    while not condition._waiters:
        if not assoc.is_alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.0001)
    return True


class Counter:
    """A thread-safe counter (associations opened by one client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def increment(self) -> None:
        with self._lock:
            self.value += 1
