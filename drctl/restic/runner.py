"""Running restic against one configured repository.

Secrets reach restic through its environment (``RESTIC_PASSWORD_FILE`` for ``file:``
references, else ``RESTIC_PASSWORD``; S3 keys as ``AWS_*``), the repository URL through
``RESTIC_REPOSITORY``: argv holds neither. Inherited ``RESTIC_*``/``AWS_*`` variables are
dropped so the caller's shell cannot redirect drctl to another repository.

Every call first takes drctl's own lock for the repository (shared or exclusive, as restic
would), so drctl's operations queue instead of failing on restic's locks. When restic
still reports a lock (another host, a crashed run), drctl removes it only when it is stale
— its holder on this host is dead, or it was not refreshed for 30 minutes (restic
refreshes live locks every 5) — and otherwise waits up to ``timeouts.lock_wait``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from drctl import execute, locks
from drctl.config import Repository, Timeouts
from drctl.errors import (
    BackendUnreachable,
    Interrupted,
    RepositoryError,
    RepositoryLocked,
    ResticMissing,
    ResticTooOld,
)
from drctl.restic import argv as A
from drctl.restic.backend import backend_for
from drctl.restic.messages import (
    BackupOutput,
    BackupStatus,
    ForgetGroup,
    LockInfo,
    Snapshot,
    classify,
    collect,
    parse_forget,
    parse_line,
    parse_lock,
    parse_snapshots,
)

log = logging.getLogger(__name__)

MIN_VERSION = (0, 14, 0)
STALE_LOCK_AGE = timedelta(minutes=30)
INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class ResticVersion:
    text: str
    version: tuple[int, int, int]


def restic_version() -> ResticVersion:
    """The installed restic's version. Raises ResticMissing / ResticTooOld."""
    try:
        result = execute.run(A.version_argv(), timeout=30)
    except execute.ToolMissing:
        raise ResticMissing(
            "restic is not installed", hint="run scripts/bootstrap or apt-get install restic"
        ) from None
    text = result.stdout.strip()
    parts = text.split()
    try:
        version = tuple(int(x) for x in parts[1].split(".")[:3])
    except (IndexError, ValueError):
        raise ResticMissing(f"cannot read restic's version from {text!r}") from None
    if version < MIN_VERSION:
        raise ResticTooOld(
            f"restic {parts[1]} is too old; drctl needs {'.'.join(map(str, MIN_VERSION))} or newer"
        )
    return ResticVersion(text, version)  # type: ignore[arg-type]


def stale_locks(
    found: Sequence[LockInfo], *, now: datetime, hostname: str, pid_alive: Callable[[int], bool]
) -> list[LockInfo]:
    """The locks whose holder is provably gone: same host and dead PID, or not refreshed
    for :data:`STALE_LOCK_AGE`."""
    stale = []
    for lock in found:
        if lock.hostname == hostname and not pid_alive(lock.pid):
            stale.append(lock)
        elif now - lock.time > STALE_LOCK_AGE:
            stale.append(lock)
    return stale


class Restic:
    """restic bound to one repository of the configuration."""

    def __init__(self, name: str, repo: Repository, *, state_dir: Path, timeouts: Timeouts):
        self.name = name
        self.repo = repo
        self.state_dir = Path(state_dir)
        self.timeouts = timeouts
        self.cache_dir = self.state_dir / "restic-cache"
        self.lock_file = locks.lock_path(self.state_dir / "locks", "repo", repo.url)
        self.waited_for_lock_s = 0.0

    # --- environment -------------------------------------------------------------------

    def environment(self, *, prune: bool = False) -> tuple[dict[str, str], list[str]]:
        """(env, secrets) for a restic child. ``prune`` selects the prune credentials.
        Resolves the secret references now (late, as late as possible)."""
        env = {
            "RESTIC_REPOSITORY": self.repo.url,
            "RESTIC_CACHE_DIR": str(self.cache_dir),
            "RESTIC_PROGRESS_FPS": "2",
            "HOME": os.environ.get("HOME", "/root"),
        }
        secrets: list[str] = []
        password = self.repo.password
        if password.scheme == "file":
            env["RESTIC_PASSWORD_FILE"] = password.target
        else:
            value = password.resolve()
            env["RESTIC_PASSWORD"] = value
            secrets.append(value)
        key_ref, secret_ref = self.repo.aws_access_key_id, self.repo.aws_secret_access_key
        if prune and self.repo.prune_credentials:
            key_ref = self.repo.prune_credentials.aws_access_key_id
            secret_ref = self.repo.prune_credentials.aws_secret_access_key
        if key_ref and secret_ref:
            env["AWS_ACCESS_KEY_ID"] = key_ref.resolve()
            env["AWS_SECRET_ACCESS_KEY"] = secret_ref.resolve()
            secrets += [env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]]
        if self.repo.aws_region:
            env["AWS_DEFAULT_REGION"] = self.repo.aws_region
        return env, secrets

    def flags(self, *, json_output: bool = True, no_lock: bool = False) -> list[str]:
        return A.global_flags(
            cacert=str(self.repo.cacert) if self.repo.cacert else None,
            insecure_tls=self.repo.insecure_tls,
            json=json_output,
            no_lock=no_lock,
        )

    # --- the one place restic runs -------------------------------------------------------

    def run(
        self,
        argv: list[str],
        *,
        action: str,
        exclusive: bool = False,
        take_lock: bool = True,
        prune_credentials: bool = False,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
        is_progress: Callable[[str, str], bool] | None = None,
        watch: Callable[[], bool] | None = None,
        input: bytes | None = None,
        input_file: str | os.PathLike | None = None,
        cwd: str | os.PathLike | None = None,
        allow_exit: Sequence[int] = (),
    ) -> execute.Result:
        """Run one restic command under drctl's repository lock; returns the result or
        raises the typed error :func:`classify` gives. ``allow_exit`` lists exit codes the
        caller interprets itself (e.g. 3 for backup)."""
        env, secrets = self.environment(prune=prune_credentials)
        waited_since = time.monotonic()

        def queued(holder: str) -> None:
            log.info("repository %s busy (%s); queued", self.name, holder or "another drctl")

        lock_cm = (
            locks.hold(
                self.lock_file,
                exclusive=exclusive,
                timeout=self.timeouts.lock_wait,
                what=f"repository {self.name}",
                on_wait=queued,
            )
            if take_lock
            else contextlib.nullcontext()
        )
        with lock_cm:
            self.waited_for_lock_s = time.monotonic() - waited_since
            deadline = time.monotonic() + self.timeouts.lock_wait
            delay = 1.0
            while True:
                result = self._execute(
                    argv,
                    env,
                    secrets,
                    action=action,
                    timeout=timeout,
                    idle_timeout=idle_timeout,
                    on_line=on_line,
                    is_progress=is_progress,
                    watch=watch,
                    input=input,
                    input_file=input_file,
                    cwd=cwd,
                )
                if result.returncode in allow_exit:
                    return result
                error = classify(
                    result.returncode, result.stderr_text, repository=self.name, action=action
                )
                if error is None:
                    return result
                if isinstance(error, RepositoryLocked) and time.monotonic() < deadline:
                    if self._remove_stale_locks():
                        continue
                    log.info(
                        "repository %s locked by a live process; retrying in %.0fs",
                        self.name,
                        delay,
                    )
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                raise error

    def _execute(
        self,
        argv,
        env,
        secrets,
        *,
        action,
        timeout,
        idle_timeout,
        on_line,
        is_progress,
        watch,
        input,
        input_file,
        cwd,
    ) -> execute.Result:
        try:
            result = execute.run(
                argv,
                env=env,
                env_drop_prefixes=("RESTIC_", "AWS_"),
                secrets=secrets,
                cwd=cwd,
                input=input,
                input_file=input_file,
                timeout=timeout,
                idle_timeout=idle_timeout,
                on_stdout_line=on_line,
                is_progress=is_progress,
                watch=watch,
                stop_signal=signal.SIGINT,
                stop_grace=30.0,
            )
        except execute.ToolMissing:
            raise ResticMissing(
                "restic is not installed", hint="run scripts/bootstrap or apt-get install restic"
            ) from None
        except execute.CommandTimeout as exc:
            stderr = "\n".join(exc.stderr_tail)
            error = classify(1, stderr, repository=self.name, action=action)
            if isinstance(error, BackendUnreachable):
                raise BackendUnreachable(
                    f"{error.message}; gave up after {exc.message.split(' ', 1)[1]}",
                    repository=self.name,
                    hint=error.hint,
                    detail=stderr,
                ) from None
            raise BackendUnreachable(
                f"repository {self.name}: restic {action} {exc.message.split(' ', 1)[1]}; stopped",
                repository=self.name,
                hint="the storage backend may be unreachable or stalled; nothing was recorded as done",
                detail=stderr,
            ) from None
        if result.returncode == INTERRUPTED_EXIT:
            raise Interrupted(f"restic {action} was interrupted")
        return result

    def _remove_stale_locks(self, *, only_if_all: bool = True) -> bool:
        """Remove restic locks whose holder is provably gone; True if any was removed.
        ``only_if_all``: do nothing while a live holder remains (waiting is needed anyway)."""
        try:
            found = self.locks()
        except RepositoryError:
            return False
        stale = stale_locks(
            found, now=datetime.now(UTC), hostname=socket.gethostname(), pid_alive=execute.pid_alive
        )
        if not stale or (only_if_all and len(stale) < len(found)):
            return False
        for lock in stale:
            log.warning(
                "removing stale restic lock %s (pid %d on %s, %s)",
                lock.id[:8],
                lock.pid,
                lock.hostname,
                lock.time.isoformat(timespec="seconds"),
            )
        env, secrets = self.environment()
        execute.run(
            A.unlock_argv(flags=self.flags(json_output=False)),
            env=env,
            env_drop_prefixes=("RESTIC_", "AWS_"),
            secrets=secrets,
            timeout=self.timeouts.repository,
            stop_signal=signal.SIGINT,
        )
        return True

    # --- operations ------------------------------------------------------------------------

    def open(self) -> None:
        """Check that the repository exists, is reachable and the password works, within
        ``timeouts.repository``. Raises the typed error otherwise."""
        self.run(
            A.cat_config_argv(self.flags(json_output=False, no_lock=True)),
            action="open",
            take_lock=False,
            timeout=self.timeouts.repository,
        )

    def init(self) -> None:
        self.run(
            A.init_argv(self.flags(json_output=False)),
            action="init",
            take_lock=False,
            timeout=self.timeouts.repository,
        )

    def backup(
        self,
        source_dir: Path,
        *,
        paths: Sequence[str] = (".",),
        host: str,
        tags: Sequence[str] = (),
        excludes: Sequence[str] = (),
        on_status: Callable[[BackupStatus], None] | None = None,
    ) -> tuple[BackupOutput, int, Snapshot]:
        """Back up ``paths`` relative to ``source_dir``. Returns (parsed output, exit code,
        the snapshot made); exit 3 (unreadable files) is returned, not raised: the caller
        decides what failed."""
        output = BackupOutput()
        started = datetime.now(UTC)
        last_done = [-1, -1]

        def on_line(line: str) -> None:
            parsed = parse_line(line)
            collect(output, parsed)
            if isinstance(parsed, BackupStatus) and on_status is not None:
                on_status(parsed)

        def progressed(stream: str, line: str) -> bool:
            if stream != "out":
                return False
            parsed = parse_line(line)
            if isinstance(parsed, BackupStatus):
                now = [parsed.bytes_done, parsed.files_done]
                moved = now != last_done
                last_done[:] = now
                return moved
            return parsed is not None

        argv = A.backup_argv(
            list(paths), host=host, tags=tags, excludes=excludes, flags=self.flags()
        )
        result = self.run(
            argv,
            action="backup",
            cwd=source_dir,
            on_line=on_line,
            is_progress=progressed,
            idle_timeout=self.timeouts.restic_idle,
            allow_exit=(3,),
        )
        if output.summary is None:
            raise RepositoryError(
                f"repository {self.name}: restic backup printed no summary",
                repository=self.name,
                detail=result.stderr_text,
            )
        snapshot = self.made_snapshot(output, host=host, tags=tags,
                                      paths=[str(Path(source_dir).resolve())], started=started)
        return output, result.returncode, snapshot

    def backup_bytes(
        self, data: bytes, *, filename: str, host: str, tags: Sequence[str] = ()
    ) -> Snapshot:
        """Store ``data`` as drctl's own small snapshot (``backup --stdin``); returns it."""
        return self._stdin_backup(filename, host, tags, input=data)

    def backup_file(
        self, path: Path, *, filename: str, host: str, tags: Sequence[str] = ()
    ) -> Snapshot:
        """Like :meth:`backup_bytes`, streaming a file (an index copy can be large)."""
        return self._stdin_backup(filename, host, tags, input_file=path)

    def _stdin_backup(self, filename: str, host: str, tags: Sequence[str], **source) -> Snapshot:
        output = BackupOutput()
        started = datetime.now(UTC)
        self.run(
            A.backup_stdin_argv(filename, host=host, tags=tags, flags=self.flags()),
            action="backup",
            idle_timeout=self.timeouts.restic_idle,
            on_line=lambda line: collect(output, parse_line(line)),
            **source,
        )
        return self.made_snapshot(output, host=host, tags=tags, paths=["/" + filename],
                                  started=started)

    def made_snapshot(self, output: BackupOutput, *, host: str, tags: Sequence[str],
                      paths: Sequence[str], started: datetime) -> Snapshot:
        """The snapshot a backup just made. restic 0.14's summary has only the short ID;
        the full one is read from the backend's snapshot listing (no key derivation), or
        from ``restic snapshots`` where drctl cannot look."""
        if output.summary is None or not output.summary.snapshot_id:
            raise RepositoryError(
                f"repository {self.name}: restic printed no snapshot id", repository=self.name
            )
        short = output.summary.snapshot_id
        ids = self._backend().snapshot_ids(short) if self._backend() else []
        if len(ids) == 1:
            return Snapshot(ids[0], short, started, host, tuple(paths), tuple(tags))
        found = self.snapshots(ids=[short])
        if not found:
            raise RepositoryError(
                f"repository {self.name}: snapshot {short} not listed", repository=self.name
            )
        return found[0]

    def _backend(self):
        if not hasattr(self, "_peek"):
            env, _ = self.environment()
            verify = str(self.repo.cacert) if self.repo.cacert else not self.repo.insecure_tls
            self._peek = backend_for(self.repo.url, self.name, env,
                                     timeout=self.timeouts.repository, verify=verify)
        return self._peek

    def probe(self) -> None:
        """Is the repository there and reachable? Without deriving the key (cheap); the
        password is proven by the first real command. Falls back to :meth:`open`. Locks
        left by processes that are provably gone are removed."""
        backend = self._backend()
        if backend is None:
            self.open()
            return
        backend.probe()
        if backend.lock_ids():
            # A drctl or restic that died (SIGKILL, a power cut) leaves its lock behind;
            # restic's next shared lock ignores it, but every exclusive operation (check,
            # prune; from other hosts for 30 minutes) would be blocked by it.
            self._remove_stale_locks(only_if_all=False)

    def snapshots(
        self, *, host: str | None = None, tags: Sequence[str] = (), ids: Sequence[str] = ()
    ) -> list[Snapshot]:
        """Snapshots (oldest first), filtered by host, tags (all must match) and IDs."""
        tag_filter = [",".join(tags)] if tags else []
        result = self.run(
            A.snapshots_argv(host=host, tags=tag_filter, ids=ids, flags=self.flags(no_lock=True)),
            action="snapshots",
            take_lock=False,
            timeout=self.timeouts.repository * 5,
        )
        return parse_snapshots(result.stdout)

    def forget_plan(
        self, policy: dict, *, group_by: str, tags: Sequence[str] = ()
    ) -> list[ForgetGroup]:
        """What ``forget`` would do (``--dry-run --json``); changes nothing."""
        tag_filter = [",".join(tags)] if tags else []
        result = self.run(
            A.forget_argv(
                policy, group_by=group_by, tags=tag_filter, dry_run=True, flags=self.flags()
            ),
            action="forget",
            timeout=self.timeouts.repository * 5,
        )
        return parse_forget(result.stdout)

    def forget(self, ids: Sequence[str], *, prune: bool = True) -> execute.Result:
        """Forget exactly ``ids`` and prune, with the prune credentials, exclusively."""
        return self.run(
            A.forget_ids_argv(ids, prune=prune, flags=self.flags(json_output=False)),
            action="prune",
            exclusive=True,
            prune_credentials=True,
            idle_timeout=self.timeouts.restic_idle,
        )

    def check(self, read_data_subset: str | None = None) -> execute.Result:
        """``restic check`` (exclusive lock). Raises RepositoryDamaged on errors."""
        return self.run(
            A.check_argv(read_data_subset, flags=self.flags(json_output=False)),
            action="check",
            exclusive=True,
        )

    def restore(
        self,
        snapshot: str,
        target: Path,
        *,
        includes: Sequence[str] = (),
        watch: Callable[[], bool] | None = None,
    ) -> execute.Result:
        """Restore ``snapshot`` into ``target``. restic 0.14 prints no restore progress, so
        ``watch`` (target growth) keeps the idle clock honest."""
        return self.run(
            A.restore_argv(
                snapshot, str(target), includes=includes, flags=self.flags(json_output=False)
            ),
            action="restore",
            watch=watch,
            idle_timeout=self.timeouts.restic_idle,
        )

    def dump(self, snapshot: str, path: str) -> bytes:
        """Contents of one file of a snapshot (drctl's records are small), binary-safe."""
        sink = io.BytesIO()
        self._dump(snapshot, path, sink)
        return sink.getvalue()

    def dump_to(self, snapshot: str, path: str, out: Path) -> None:
        """Write one file of a snapshot to ``out`` (streamed: an index copy can be large)."""
        with open(out, "wb") as fh:
            self._dump(snapshot, path, fh)

    def _dump(self, snapshot: str, path: str, sink: BinaryIO) -> None:
        env, secrets = self.environment()
        argv = A.dump_argv(snapshot, path, flags=self.flags(json_output=False))
        with locks.hold(
            self.lock_file,
            exclusive=False,
            timeout=self.timeouts.lock_wait,
            what=f"repository {self.name}",
        ):
            proc = execute.Process(
                argv,
                env=env,
                secrets=secrets,
                stop_signal=signal.SIGINT,
                env_drop_prefixes=("RESTIC_", "AWS_"),
            )
            stderr: list[bytes] = []
            reader = threading.Thread(
                target=lambda: stderr.append(proc.popen.stderr.read()), daemon=True
            )
            reader.start()
            try:
                for chunk in iter(lambda: proc.popen.stdout.read(1 << 20), b""):
                    sink.write(chunk)
                code = proc.popen.wait()
                reader.join()
            except BaseException:
                proc.stop()
                raise
            finally:
                proc.popen.stdout.close()
                proc.popen.stderr.close()
        text = execute.mask(b"".join(stderr).decode("utf-8", "replace"), secrets)
        error = classify(code, text, repository=self.name, action="dump")
        if error is not None:
            raise error

    def locks(self) -> list[LockInfo]:
        """restic's current locks with their holders. A lock that vanishes while it is
        being read (its holder finished) is skipped: restic would retry reading it for
        a minute, so each read gets a few seconds only."""
        flags = self.flags(json_output=False, no_lock=True)
        listing = self.run(A.list_argv("locks", flags=flags), action="list",
                           take_lock=False, timeout=self.timeouts.repository)
        env, secrets = self.environment()
        found = []
        for lock_id in listing.stdout.split():
            try:
                result = execute.run(A.cat_argv("lock", lock_id, flags=flags), env=env,
                                     env_drop_prefixes=("RESTIC_", "AWS_"), secrets=secrets,
                                     timeout=min(5.0, self.timeouts.repository),
                                     stop_signal=signal.SIGINT, stop_grace=5.0)
            except execute.CommandTimeout:
                continue
            if result.returncode != 0:
                continue
            try:
                found.append(parse_lock(lock_id, result.stdout))
            except (ValueError, KeyError, json.JSONDecodeError):
                continue
        return found

    def rebuild_index(self) -> execute.Result:
        return self.run(
            A.rebuild_index_argv(flags=self.flags(json_output=False)),
            action="rebuild-index",
            exclusive=True,
        )
