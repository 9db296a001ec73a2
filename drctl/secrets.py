"""Secret references: ``env:NAME``, ``file:PATH``, ``command:CMD``.

A reference is what the configuration holds and what may be printed; the secret itself is
resolved at the last moment (:meth:`SecretRef.resolve`) and handed to child processes
through their environment or a file, never argv, never logs, never the catalog.
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass, field

from drctl.errors import UsageError

SCHEMES = ("env", "file", "command")


class SecretUnavailable(UsageError):
    """A secret reference cannot be resolved (variable unset, file unreadable, command
    failed). Exit 2: it is a configuration problem."""


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret. ``key`` is where it was configured (for messages)."""

    scheme: str
    target: str
    key: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str, key: str = "") -> SecretRef:
        """Parse ``scheme:target``. Raises ValueError with a reason on anything else."""
        if not isinstance(text, str):
            raise ValueError("must be a string: env:NAME, file:PATH or command:CMD")
        scheme, sep, target = text.partition(":")
        if not sep or scheme not in SCHEMES:
            raise ValueError(
                "must be a secret reference env:NAME, file:PATH or command:CMD "
                "(literal secrets are not accepted)"
            )
        target = target.strip()
        if not target:
            raise ValueError(f"{scheme}: reference is empty")
        if scheme == "env" and not target.replace("_", "").isalnum():
            raise ValueError(f"env:{target}: not a valid environment variable name")
        if scheme == "command":
            try:
                shlex.split(target)
            except ValueError as exc:
                raise ValueError(f"command: cannot be parsed ({exc})") from None
        return cls(scheme, target, key)

    def __str__(self) -> str:  # the reference, never the secret
        return f"{self.scheme}:{self.target}"

    def __repr__(self) -> str:
        return f"SecretRef({self})"

    @property
    def path(self) -> str | None:
        """The file path for ``file:`` references (for RESTIC_PASSWORD_FILE and the like)."""
        return self.target if self.scheme == "file" else None

    def resolve(self, timeout: float = 30.0) -> str:
        """Return the secret (trailing newline stripped). Raises :class:`SecretUnavailable`."""
        where = f"{self.key}: " if self.key else ""
        if self.scheme == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretUnavailable(f"{where}environment variable {self.target} is not set")
            return value
        if self.scheme == "file":
            try:
                with open(self.target, encoding="utf-8") as fh:
                    return fh.read().rstrip("\r\n")
            except OSError as exc:
                raise SecretUnavailable(
                    f"{where}cannot read secret file {self.target}: {exc.strerror}"
                ) from None
        from drctl import execute  # late: execute is only needed for command: references

        try:
            result = execute.run(shlex.split(self.target), timeout=timeout)
        except execute.CommandTimeout:
            raise SecretUnavailable(
                f"{where}secret command timed out after {timeout:.0f}s"
            ) from None
        except Exception as exc:  # ToolMissing and friends: report without the output
            raise SecretUnavailable(f"{where}secret command failed: {exc}") from None
        if result.returncode != 0:
            raise SecretUnavailable(
                f"{where}secret command exited {result.returncode} (its output is not shown)"
            )
        value = result.stdout.rstrip("\r\n")
        if not value:
            raise SecretUnavailable(f"{where}secret command printed nothing")
        return value

    def exposure(self) -> str | None:
        """For ``file:`` references: a warning when the file is readable or writable by
        users other than its owner, else None."""
        if self.scheme != "file":
            return None
        try:
            mode = os.stat(self.target).st_mode
        except OSError:
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            return (
                f"{self.key or 'secret'}: {self.target} is accessible by other users "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            )
        return None
