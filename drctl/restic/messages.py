"""Parsing of restic 0.14's ``--json`` output and its error messages.

restic 0.14 reports most failures as exit 1 with a ``Fatal:`` line on stderr (codes 10-12
only exist from 0.17), so :func:`classify` maps both exit codes and message texts to the
typed errors of :mod:`drctl.errors`. Every function here is pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drctl.errors import (
    BackendUnreachable,
    RepositoryDamaged,
    RepositoryError,
    RepositoryExists,
    RepositoryLocked,
    RepositoryMissing,
    SourceUnreadable,
    WrongPassword,
)
from drctl.net import STORAGE_CACERT_HINT, UNTRUSTED_CERTIFICATE

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 3  # snapshot made, some source files unreadable
EXIT_NO_REPO = 10  # >= 0.17
EXIT_LOCKED = 11  # >= 0.17
EXIT_WRONG_PASSWORD = 12  # >= 0.17
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class BackupStatus:
    percent_done: float
    total_files: int
    files_done: int
    total_bytes: int
    bytes_done: int


@dataclass(frozen=True)
class FileAction:
    """A per-file ``verbose_status`` line: action is new, modified or unchanged."""

    action: str
    item: str
    data_size: int


@dataclass(frozen=True)
class BackupError:
    item: str
    during: str
    message: str


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    total_files_processed: int
    total_bytes_processed: int
    total_duration: float


@dataclass
class BackupOutput:
    """Everything parsed from one ``restic backup --json`` run."""

    summary: BackupSummary | None = None
    new_files: list[str] = field(default_factory=list)
    modified_files: list[str] = field(default_factory=list)
    errors: list[BackupError] = field(default_factory=list)
    last_status: BackupStatus | None = None


def parse_line(line: str) -> object | None:
    """Parse one JSON line of ``restic backup --json``; None for anything else."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        return None
    kind = msg.get("message_type")
    if kind == "status" and "action" not in msg:
        return BackupStatus(
            percent_done=float(msg.get("percent_done", 0.0)),
            total_files=int(msg.get("total_files", 0)),
            files_done=int(msg.get("files_done", 0)),
            total_bytes=int(msg.get("total_bytes", 0)),
            bytes_done=int(msg.get("bytes_done", 0)),
        )
    if kind == "verbose_status" and msg.get("action") in ("new", "modified", "unchanged"):
        return FileAction(msg["action"], msg.get("item", ""), int(msg.get("data_size", 0)))
    if kind == "error":
        err = msg.get("error") or {}
        text = err.get("Err") if isinstance(err, dict) else str(err)
        if isinstance(err, dict) and err.get("Op"):
            text = f"{err.get('Op')} {err.get('Path', '')}: {text}"
        return BackupError(msg.get("item", ""), msg.get("during", ""), str(text))
    if kind == "summary":
        return BackupSummary(
            snapshot_id=msg.get("snapshot_id", ""),
            files_new=int(msg.get("files_new", 0)),
            files_changed=int(msg.get("files_changed", 0)),
            files_unmodified=int(msg.get("files_unmodified", 0)),
            data_added=int(msg.get("data_added", 0)),
            total_files_processed=int(msg.get("total_files_processed", 0)),
            total_bytes_processed=int(msg.get("total_bytes_processed", 0)),
            total_duration=float(msg.get("total_duration", 0.0)),
        )
    return None


def collect(output: BackupOutput, parsed: object | None) -> None:
    """Fold one parsed message into ``output``. Directory entries (ending in /) are skipped."""
    if isinstance(parsed, FileAction):
        if parsed.item.endswith("/"):
            return
        if parsed.action == "new":
            output.new_files.append(parsed.item)
        elif parsed.action == "modified":
            output.modified_files.append(parsed.item)
    elif isinstance(parsed, BackupStatus):
        output.last_status = parsed
    elif isinstance(parsed, BackupError):
        output.errors.append(parsed)
    elif isinstance(parsed, BackupSummary):
        output.summary = parsed


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    parent: str | None = None

    def tag_value(self, key: str) -> str | None:
        prefix = f"{key}:"
        for t in self.tags:
            if t.startswith(prefix):
                return t[len(prefix) :]
        return None


def parse_time(text: str) -> datetime:
    """restic's RFC 3339 times with nanoseconds -> aware UTC datetime."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not m:
        raise ValueError(f"not a restic time: {text!r}")
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).astimezone(UTC)


def parse_snapshot(obj: dict) -> Snapshot:
    return Snapshot(
        id=obj["id"],
        short_id=obj.get("short_id", obj["id"][:8]),
        time=parse_time(obj["time"]),
        hostname=obj.get("hostname", ""),
        paths=tuple(obj.get("paths") or ()),
        tags=tuple(obj.get("tags") or ()),
        parent=obj.get("parent"),
    )


def parse_snapshots(text: str) -> list[Snapshot]:
    """``restic snapshots --json`` -> snapshots, oldest first."""
    data = json.loads(text or "[]") or []
    return sorted((parse_snapshot(o) for o in data), key=lambda s: s.time)


@dataclass(frozen=True)
class ForgetGroup:
    host: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    keep: tuple[Snapshot, ...]
    remove: tuple[Snapshot, ...]


def parse_forget(text: str) -> list[ForgetGroup]:
    """``restic forget --dry-run --json`` -> the plan, one group per host/paths."""
    data = json.loads(text or "[]") or []
    return [
        ForgetGroup(
            host=g.get("host") or "",
            paths=tuple(g.get("paths") or ()),
            tags=tuple(g.get("tags") or ()),
            keep=tuple(parse_snapshot(s) for s in g.get("keep") or ()),
            remove=tuple(parse_snapshot(s) for s in g.get("remove") or ()),
        )
        for g in data
    ]


@dataclass(frozen=True)
class LockInfo:
    id: str
    time: datetime
    exclusive: bool
    hostname: str
    pid: int


def parse_lock(lock_id: str, text: str) -> LockInfo:
    obj = json.loads(text)
    return LockInfo(
        lock_id,
        parse_time(obj["time"]),
        bool(obj.get("exclusive")),
        obj.get("hostname", ""),
        int(obj.get("pid", 0)),
    )


# --- errors ------------------------------------------------------------------------------

_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|dial tcp|"
    r"connection reset|TLS handshake|certificate|context deadline exceeded|"
    r"server gave HTTP response to HTTPS client|EOF$",
    re.I,
)


UNTRUSTED_HINT = STORAGE_CACERT_HINT + "; drctl did not change anything"


def classify(
    returncode: int, stderr: str, *, repository: str, action: str
) -> RepositoryError | None:
    """Map a finished restic run to a typed error, or None when it succeeded.

    ``repository`` is the repository's name (never its URL with credentials); ``action``
    says what drctl was doing ("backup", "check", ...). Exit 3 is a failure for a PACS:
    an image that could not be read is data missing from the snapshot.
    """
    if returncode == EXIT_OK:
        return None
    tail = stderr.strip().splitlines()[-1:] or [""]
    where = f"repository {repository}"
    text = stderr
    if returncode == EXIT_PARTIAL:
        return SourceUnreadable(
            f"{action}: some source files could not be read; the snapshot is incomplete",
            hint="check file permissions and disk health on the node; a missing image is data loss",
            detail=stderr,
        )
    if returncode == EXIT_WRONG_PASSWORD or "wrong password or no key found" in text:
        return WrongPassword(
            f"{where}: wrong password (restic: wrong password or no key found)",
            repository=repository,
            hint="check the password reference in [repository.*] and the file or variable it names",
        )
    if returncode == EXIT_LOCKED or "repository is already locked" in text:
        holder = re.search(r"locked (?:exclusively )?by (PID \d+ on \S+ by [^\n(]+)", text)
        return RepositoryLocked(
            f"{where} is locked by another restic process"
            + (f" ({holder.group(1).strip()})" if holder else ""),
            repository=repository,
            hint="wait for it to finish; drctl removes a lock only when its holder is provably gone",
            detail=stderr,
        )
    if "config file already exists" in text:
        return RepositoryExists(f"{where} already exists", repository=repository)
    if UNTRUSTED_CERTIFICATE.search(text):
        return BackendUnreachable(
            f"{where}: the storage's TLS certificate is not trusted ({_short(text)})",
            repository=repository,
            hint=UNTRUSTED_HINT,
            detail=stderr,
        )
    if _UNREACHABLE.search(text):
        return BackendUnreachable(
            f"{where}: storage backend unreachable ({_short(text)})",
            repository=repository,
            hint="check the URL, network and credentials; drctl did not change anything",
            detail=stderr,
        )
    if (
        returncode == EXIT_NO_REPO
        or "Is there a repository at the following location?" in text
        or "specified bucket does not exist" in text
    ):
        return RepositoryMissing(
            f"{where} does not exist or cannot be opened ({_short(text)})",
            repository=repository,
            hint="create it with `drctl repo init` or fix the url",
            detail=stderr,
        )
    if re.search(
        r"Access Denied|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|Forbidden", text
    ):
        return BackendUnreachable(
            f"{where}: access denied by the storage backend ({_short(text)})",
            repository=repository,
            hint="check the S3 credentials references",
            detail=stderr,
        )
    if action == "check":
        return RepositoryDamaged(
            f"{where}: restic check found errors ({_short(text)})",
            repository=repository,
            hint="see the runbook 'repository damage': restic rebuild-index, then check again",
            detail=stderr,
        )
    return RepositoryError(
        f"{where}: restic {action} failed with exit {returncode}: {tail[0].strip()[:300]}",
        repository=repository,
        detail=stderr,
    )


def _short(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Fatal:"):
            return line.removeprefix("Fatal:").strip()[:300]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"
