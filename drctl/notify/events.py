"""What an alert says, in one place: the JSON a webhook receives and the text of an email.

Alert bodies carry no patient names or IDs and no secrets: reasons come from run records
(which hold none), are passed through :func:`redact` (credentials in URLs, known secret
values, length), and study UIDs appear only where a person must act (vanished studies).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

SEVERITIES = ("info", "warning", "critical")
MAX_TEXT = 2000
MAX_UIDS = 50
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@")
_QUERY_SECRETS = re.compile(r"(?i)((?:token|key|secret|password|passwd|sig|signature)=)[^&\s]+")

# alert kind -> (severity, title); the kinds a receiver can route on
KINDS: dict[str, tuple[str, str]] = {
    "run_failed": ("critical", "job failed"),
    "run_warning": ("warning", "job needs attention"),
    "run_recovered": ("info", "job succeeded again"),
    "vanished_studies": ("warning", "studies vanished from the archive"),
    "circuit_breaker": ("critical", "circuit breaker tripped"),
    "drill_failed": ("critical", "restore drill failed"),
    "drill_passed": ("info", "restore drill passed"),
    "rpo_breach": ("critical", "RPO exceeded"),
    "rpo_recovered": ("info", "RPO back within limit"),
}


def redact(value: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``value`` without URL credentials, secret-looking query parameters or any of
    ``secrets``, cut to a readable length."""
    if value is None:
        return None
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", value)
    text = _QUERY_SECRETS.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True)
class Alert:
    """One event worth telling people about."""

    kind: str
    site: str
    summary: str
    reason: str | None = None
    agent: str | None = None
    job: str | None = None
    node: str | None = None
    repository: str | None = None
    run_id: int | None = None
    study_uids: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    host: str = field(default_factory=socket.gethostname)

    @property
    def severity(self) -> str:
        return KINDS.get(self.kind, ("warning", ""))[0]

    @property
    def title(self) -> str:
        return KINDS.get(self.kind, ("", self.kind))[1]

    def redacted(self, secrets: Iterable[str]) -> Alert:
        """A copy whose free texts went through :func:`redact`."""
        secrets = list(secrets)
        facts = {k: redact(v, secrets) if isinstance(v, str) else v for k, v in self.facts.items()}
        return Alert(
            self.kind,
            self.site,
            redact(self.summary, secrets) or "",
            redact(self.reason, secrets),
            self.agent,
            self.job,
            self.node,
            self.repository,
            self.run_id,
            self.study_uids,
            facts,
            self.at,
            self.host,
        )

    def to_json(self) -> dict:
        """The webhook body."""
        return {
            "source": "drctl",
            "version": 1,
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "site": self.site,
            "summary": self.summary,
            "reason": self.reason,
            "agent": self.agent,
            "job": self.job,
            "node": self.node,
            "repository": self.repository,
            "run_id": self.run_id,
            "study_uids": list(self.study_uids[:MAX_UIDS]),
            "study_uids_total": len(self.study_uids),
            "facts": self.facts,
            "at": self.at.isoformat(),
            "host": self.host,
        }

    def subject(self) -> str:
        return f"[drctl {self.severity}] {self.site}: {self.summary}"[:200]

    def text(self) -> str:
        """The plain-text email body."""
        lines = [f"{self.title} at site {self.site}", "", self.summary, ""]
        if self.reason:
            lines += ["Reason:", f"  {self.reason}", ""]
        for label, value in (
            ("agent", self.agent),
            ("job", self.job),
            ("node", self.node),
            ("repository", self.repository),
            ("run", self.run_id),
        ):
            if value is not None:
                lines.append(f"{label}: {value}")
        for key, value in self.facts.items():
            lines.append(f"{key}: {value}")
        if self.study_uids:
            lines += ["", f"Studies ({len(self.study_uids)}):"]
            lines += [f"  {uid}" for uid in self.study_uids[:MAX_UIDS]]
            if len(self.study_uids) > MAX_UIDS:
                lines.append(
                    f"  ... and {len(self.study_uids) - MAX_UIDS} more "
                    "(drctl studies locate / ack-vanished)"
                )
        lines += ["", f"sent by drctl on {self.host} at {self.at.isoformat(timespec='seconds')}"]
        return "\n".join(lines) + "\n"
