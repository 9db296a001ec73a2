"""The error tree. Each error carries the exit code of cli.md and a message that says
what failed, where, and what to do next. The CLI prints ``str(error)`` on one line and
exits with ``error.exit_code``; a Python traceback reaching the user is a bug.

Exit codes (cli.md): 0 done, 1 problems found, 2 usage/config, 3 could not do the job,
130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


class DrctlError(Exception):
    """Base of every error drctl expects. ``hint`` says what to do next."""

    exit_code = EXIT_PROBLEMS

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra lines (e.g. the tail of a tool's stderr) shown only with -v.
        self.detail = detail

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


# --- 2: usage and configuration ---------------------------------------------------------


class UsageError(DrctlError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The configuration is invalid. ``problems`` holds every (key, reason) found at once."""

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        lines = [f"{path}: {key}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines) if lines else f"{path}: invalid configuration")


# --- 3: could not do the job -------------------------------------------------------------


class UnavailableError(DrctlError):
    """Something the job needs (a tool, a repository, the catalog, a node) is unreachable
    or failing before the work could start."""

    exit_code = EXIT_UNAVAILABLE


class ToolMissing(UnavailableError):
    pass


class CatalogUnavailable(UnavailableError):
    pass


class LockTimeout(UnavailableError):
    """Another drctl operation holds a lock we waited for too long."""


class NodeUnreachable(UnavailableError):
    """A PACS node does not answer (DICOM or REST)."""


class RepositoryError(UnavailableError):
    """restic or the repository failed. ``repository`` names the repository."""

    def __init__(self, message: str, *, repository: str | None = None, **kw):
        self.repository = repository
        super().__init__(message, **kw)


class ResticMissing(ToolMissing):
    pass


class ResticTooOld(ToolMissing):
    pass


class WrongPassword(RepositoryError):
    pass


class RepositoryMissing(RepositoryError):
    pass


class RepositoryExists(RepositoryError):
    pass


class RepositoryLocked(RepositoryError):
    pass


class BackendUnreachable(RepositoryError):
    pass


class RepositoryDamaged(RepositoryError):
    """restic check found errors: the job ran, the repository is damaged (a finding)."""

    exit_code = EXIT_PROBLEMS


class SnapshotNotFound(UsageError):
    pass


# --- failures during the work (exit 1) -----------------------------------------------------


class JobFailed(DrctlError):
    """The job started but could not complete; recorded as a failed run."""

    exit_code = EXIT_PROBLEMS


class SourceUnreadable(JobFailed):
    """restic exit 3: some source files could not be read. For a PACS an image is missing."""


class CircuitBreakerOpen(JobFailed):
    """Mass deletion or modification was detected; prune and replication pause until a
    person acknowledges."""


class PruneRefused(JobFailed):
    pass


# --- DICOM ---------------------------------------------------------------------------------


class DicomError(DrctlError):
    """A DICOM operation did not succeed. Subclasses say how."""

    exit_code = EXIT_PROBLEMS


class DicomUnreachable(DicomError, NodeUnreachable):
    """TCP connection refused or association request not answered."""

    exit_code = EXIT_UNAVAILABLE


class DicomRejected(DicomError):
    """The peer rejected the association (reason in the message)."""


class DicomAborted(DicomError):
    """The peer aborted the association."""


class DicomTimeout(DicomError):
    """The peer stopped answering within the configured timeout."""


class DicomStatusError(DicomError):
    """A DIMSE request completed with a non-success status."""

    def __init__(self, message: str, *, status: int | None = None, **kw):
        self.status = status
        super().__init__(message, **kw)


class DicomMalformed(DicomError):
    """The peer returned an identifier drctl cannot decode."""


# --- 130 -----------------------------------------------------------------------------------


class Interrupted(DrctlError):
    exit_code = EXIT_INTERRUPTED
