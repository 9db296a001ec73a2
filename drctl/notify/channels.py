"""Delivery to one receiver: webhook (JSON POST), email (SMTP), healthchecks-style pings.

Each function makes one attempt within ``timeout`` seconds and raises
:class:`DeliveryFailed` (``permanent`` when retrying cannot help, e.g. HTTP 404 or a
refused login). Retries, backoff and logging are the notifier's business. Messages never
contain the receiver's URL (it may hold a token) or a password.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from drctl import __version__
from drctl.notify.events import Alert

USER_AGENT = f"drctl/{__version__}"
RETRY_HTTP = {408, 425, 429}


class DeliveryFailed(Exception):
    """One delivery attempt failed; ``permanent`` when a retry cannot help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def _http(url: str, *, data: bytes | None, content_type: str, timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"User-Agent": USER_AGENT, "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in RETRY_HTTP
        raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}", permanent=permanent) from None
    except urllib.error.URLError as exc:
        raise DeliveryFailed(f"cannot connect: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # a malformed URL
        raise DeliveryFailed(f"not a usable URL ({exc})", permanent=True) from None


def post_webhook(url: str, alert: Alert, timeout: float) -> None:
    """POST the alert's JSON to ``url``. Raises DeliveryFailed."""
    body = json.dumps(alert.to_json(), sort_keys=False).encode("utf-8")
    _http(url, data=body, content_type="application/json", timeout=timeout)


def ping(url: str, phase: str, timeout: float, body: str | None = None) -> None:
    """A healthchecks-style ping: ``<url>/start``, ``<url>`` (success), ``<url>/fail``.
    A failure ping carries the (redacted) reason as its body. Raises DeliveryFailed."""
    target = url.rstrip("/") + {"start": "/start", "success": "", "fail": "/fail"}[phase]
    data = body.encode("utf-8") if body is not None else None
    _http(target, data=data, content_type="text/plain; charset=utf-8", timeout=timeout)


def smtp_address(smtp: str) -> tuple[str, int]:
    """``host:port`` (port defaults to 587) -> (host, port)."""
    host, _, port = smtp.rpartition(":")
    if not host or not port.isdigit():
        return smtp, 587
    return host.strip("[]"), int(port)


def send_email(
    *,
    smtp: str,
    sender: str,
    to: list[str],
    alert: Alert,
    timeout: float,
    starttls: bool,
    username: str | None,
    password: str | None,
) -> None:
    """Send the alert as a plain-text email through ``smtp`` (``host:port``; port 465
    means implicit TLS). Raises DeliveryFailed."""
    host, port = smtp_address(smtp)
    message = EmailMessage()
    message["Subject"] = alert.subject()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["X-Drctl-Kind"] = alert.kind
    message.set_content(alert.text())
    context = ssl.create_default_context()
    try:
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            client.ehlo()
            if starttls and port != 465:
                client.starttls(context=context)
                client.ehlo()
            if username:
                client.login(username, password or "")
            client.send_message(message)
    except smtplib.SMTPNotSupportedError:
        raise DeliveryFailed(
            f"SMTP server {host}:{port} does not offer STARTTLS (notify.email.starttls = true)",
            permanent=True,
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryFailed(
            f"SMTP login refused by {host}:{port} (code {exc.smtp_code})", permanent=True
        ) from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryFailed(
            f"SMTP server {host}:{port} refused the recipients", permanent=True
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}") from None
