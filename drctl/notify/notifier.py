"""The notifier: alerts to the webhook and email, pings to healthchecks-style monitors.

Deliveries never block or fail a job: callers enqueue and return. One worker thread per
channel (webhook, email, pings) delivers in order, each attempt bounded by
``notify.timeout``, with ``notify.retries`` retries and a short backoff; a receiver that
stays dead is logged (without its URL, which may hold a token) and the item dropped, and a
dead webhook does not delay the email. :meth:`Notifier.close` gives queued items a short,
bounded time to go out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drctl.config import Notify, Settings, secret_refs
from drctl.errors import DrctlError
from drctl.notify import channels
from drctl.notify.events import Alert, redact

log = logging.getLogger(__name__)

QUEUE_SIZE = 500
BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


def known_secrets(settings: Settings) -> list[str]:
    """The values of the configuration's ``env:`` and ``file:`` secrets, to mask them in
    alert texts (``command:`` references are not run for this)."""
    values = []
    for ref in secret_refs(settings):
        if ref.scheme == "command":
            continue
        try:
            values.append(ref.resolve())
        except DrctlError:
            continue
    return [v for v in values if v and len(v) >= 4]


@dataclass
class _Item:
    what: str  # for logs: "webhook run_failed", "ping backup/start"
    send: Callable[[], None]
    channel: str


class _Worker(threading.Thread):
    def __init__(self, channel: str, owner: Notifier):
        super().__init__(name=f"notify-{channel}", daemon=True)
        self.channel, self.owner = channel, owner
        self.items: queue.Queue[_Item | None] = queue.Queue(QUEUE_SIZE)

    def submit(self, item: _Item) -> None:
        try:
            self.items.put_nowait(item)
        except queue.Full:
            log.error(
                "notify: %s dropped: the %s queue is full (receiver too slow or dead)",
                item.what,
                self.channel,
            )
            self.owner.record(self.channel, False)

    def run(self) -> None:
        while True:
            item = self.items.get()
            if item is None:
                return
            self.owner.record(self.channel, self._deliver(item))

    def _deliver(self, item: _Item) -> bool:
        attempts = 1 + self.owner.settings.retries
        for attempt in range(1, attempts + 1):
            try:
                item.send()
                log.info("notify: %s delivered", item.what)
                return True
            except channels.DeliveryFailed as exc:
                last = attempt == attempts or exc.permanent
                level = logging.ERROR if last else logging.WARNING
                log.log(
                    level,
                    "notify: %s failed (attempt %d of %d): %s%s",
                    item.what,
                    attempt,
                    attempts,
                    exc,
                    "" if not last else "; given up",
                )
                if last:
                    return False
            except DrctlError as exc:  # a secret reference that does not resolve
                log.error("notify: %s not sent: %s", item.what, exc)
                return False
            except Exception as exc:  # a receiver must never kill the worker
                log.error("notify: %s failed: %s: %s", item.what, type(exc).__name__, exc)
                return False
            if self.owner.closing.wait(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]):
                log.error("notify: %s abandoned: the daemon is stopping", item.what)
                return False
        return False


class Notifier:
    """Enqueue alerts and pings; see the module docstring for the delivery rules."""

    def __init__(
        self,
        settings: Notify,
        *,
        site: str,
        mask: list[str] | None = None,
        on_result: Callable[[str, bool], None] | None = None,
    ):
        self.settings, self.site = settings, site
        self.mask = list(mask or [])
        self.on_result = on_result
        self.closing = threading.Event()
        self._workers = {name: _Worker(name, self) for name in ("webhook", "email", "pings")}
        for worker in self._workers.values():
            worker.start()

    def update(self, settings: Notify, mask: list[str] | None = None) -> None:
        """Use new settings from now on (config reload)."""
        self.settings = settings
        if mask is not None:
            self.mask = list(mask)

    def record(self, channel: str, ok: bool) -> None:
        if self.on_result is not None:
            try:
                self.on_result(channel, ok)
            except Exception:  # metrics must not break delivery
                log.debug("notify: result callback failed", exc_info=True)

    def alert(self, alert: Alert) -> None:
        """Send ``alert`` to every configured receiver (asynchronously)."""
        safe = alert.redacted(self.mask)
        log.warning(
            "alert %s: %s%s", safe.kind, safe.summary, f" ({safe.reason})" if safe.reason else ""
        )
        cfg = self.settings
        if cfg.webhook is not None:
            ref, timeout = cfg.webhook, cfg.timeout

            def send_webhook() -> None:
                channels.post_webhook(ref.resolve(), safe, timeout)

            self._workers["webhook"].submit(
                _Item(f"webhook {safe.kind} ({ref})", send_webhook, "webhook")
            )
        if cfg.email is not None:
            email, timeout = cfg.email, cfg.timeout

            def send_email() -> None:
                password = email.password.resolve() if email.password else None
                channels.send_email(
                    smtp=email.smtp,
                    sender=email.sender,
                    to=list(email.to),
                    alert=safe,
                    timeout=timeout,
                    starttls=email.starttls,
                    username=email.username,
                    password=password,
                )

            self._workers["email"].submit(
                _Item(f"email {safe.kind} to {len(email.to)} recipient(s)", send_email, "email")
            )

    def ping(self, job_kind: str, phase: str, reason: str | None = None) -> None:
        """Ping the monitor of ``job_kind`` (``notify.pings``) for ``phase`` start, success
        or fail; nothing when none is configured."""
        url = self.settings.pings.get(job_kind)
        if not url:
            return
        timeout = self.settings.timeout
        body = redact(reason, self.mask) if phase == "fail" else None

        def send() -> None:
            channels.ping(url, phase, timeout, body)

        self._workers["pings"].submit(_Item(f"ping {job_kind}/{phase}", send, "pings"))

    def close(self, timeout: float = 5.0) -> None:
        """Let queued deliveries go out for up to ``timeout`` seconds, then stop."""
        deadline = time.monotonic() + timeout
        for worker in self._workers.values():
            try:
                worker.items.put_nowait(None)
            except queue.Full:
                pass
        for worker in self._workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
        self.closing.set()
        for worker in self._workers.values():
            worker.join(0.5)
