"""The only place drctl starts processes.

argv lists only (never a shell), secrets only through the environment or files, output
streamed line by line to a callback, the last lines of stderr kept for error messages,
and two clocks: an overall ``timeout`` and an ``idle_timeout`` (no output at all for that
long). A process is stopped with ``stop_signal`` (SIGINT for restic 0.14, which ignores
SIGTERM's cleanup), given ``stop_grace`` seconds, then killed. Children receive
``stop_signal`` if drctl itself dies (PR_SET_PDEATHSIG), so a SIGKILLed drctl does not
leave a restic upload running behind it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drctl.errors import DrctlError, Interrupted, ToolMissing

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 30
MASK = "***"

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


class CommandTimeout(DrctlError):
    """A child process exceeded its overall or idle timeout and was stopped."""

    def __init__(self, message: str, *, stderr_tail: list[str], idle: bool):
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.idle = idle


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr_tail: list[str]
    duration_s: float
    stderr_lines: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail)


def mask(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every non-trivial secret replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


def _child_setup(stop_signal: int) -> Callable[[], None]:
    def setup() -> None:
        # Own process group: a terminal's Ctrl-C reaches drctl, which stops the child
        # itself with the right signal, once.
        os.setpgrp()
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, int(stop_signal), 0, 0, 0)

    return setup


class Process:
    """A running child. Use :func:`run` unless you need to stop it from another thread."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        stdin: int | None = None,
        stop_signal: int = signal.SIGTERM,
        secrets: Iterable[str] = (),
        merge_env: bool = True,
        env_drop_prefixes: tuple[str, ...] = (),
    ):
        self.argv = [str(a) for a in argv]
        self.secrets = [s for s in secrets if s]
        self.stop_signal = stop_signal
        child_env = dict(os.environ) if merge_env else {}
        for name in list(child_env):
            if name.startswith(env_drop_prefixes) and env_drop_prefixes:
                del child_env[name]
        if env:
            child_env.update(env)
        log.debug("run: %s", mask(" ".join(self.argv), self.secrets))
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=child_env,
                preexec_fn=_child_setup(stop_signal),  # noqa: PLW1509 - needed for pdeathsig
            )
        except FileNotFoundError as exc:
            raise ToolMissing(
                f"{self.argv[0]} not found",
                hint="run scripts/bootstrap or install it with the distribution's package manager",
            ) from exc
        except PermissionError as exc:
            raise ToolMissing(f"{self.argv[0]} is not executable: {exc}") from exc
        self.started = time.monotonic()
        self._stopped = threading.Event()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, grace: float = 30.0) -> None:
        """Send the stop signal, wait up to ``grace`` seconds, then SIGKILL."""
        if self.popen.poll() is not None:
            return
        self._stopped.set()
        try:
            os.kill(self.popen.pid, self.stop_signal)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.argv[0], grace)
            self.popen.kill()
            self.popen.wait()


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: bytes | None = None,
    input_file: str | os.PathLike | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    on_stdout_line: Callable[[str], None] | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    capture_stdout: bool = True,
    stop_signal: int = signal.SIGTERM,
    stop_grace: float = 30.0,
    secrets: Iterable[str] = (),
    on_start: Callable[[Process], None] | None = None,
    is_progress: Callable[[str, str], bool] | None = None,
    watch: Callable[[], bool] | None = None,
    env_drop_prefixes: tuple[str, ...] = (),
) -> Result:
    """Run ``argv`` to completion and return its :class:`Result` (any exit code).

    Raises :class:`ToolMissing` when the program does not exist, :class:`CommandTimeout`
    when a timeout expired (the child has been stopped), and :class:`Interrupted` when
    drctl was interrupted (the child has been stopped with ``stop_signal``).

    ``idle_timeout`` counts time without progress: by default any output line is progress;
    ``is_progress(stream, line)`` narrows that (restic prints status lines even when stuck),
    and ``watch()``, polled about once a second, reports progress seen elsewhere (a restore
    target growing).
    """
    secrets = [s for s in secrets if s]
    stdin_fd = None
    input_fh = None
    if input is not None:
        stdin_fd = subprocess.PIPE
    elif input_file is not None:
        input_fh = open(input_file, "rb")  # noqa: SIM115 - closed below
        stdin_fd = input_fh.fileno()
    try:
        proc = Process(
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin_fd,
            stop_signal=stop_signal,
            secrets=secrets,
            env_drop_prefixes=env_drop_prefixes,
        )
    finally:
        if input_fh is not None:
            input_fh.close()
    if on_start is not None:
        on_start(proc)
    popen = proc.popen
    writer = None
    if input is not None:

        def feed() -> None:
            try:
                popen.stdin.write(input)
                popen.stdin.close()
            except (BrokenPipeError, ValueError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()

    stdout_parts: list[str] = []
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    stderr_count = 0
    buffers = {"out": b"", "err": b""}
    sel = selectors.DefaultSelector()
    sel.register(popen.stdout, selectors.EVENT_READ, "out")
    sel.register(popen.stderr, selectors.EVENT_READ, "err")
    last_output = time.monotonic()
    last_watch = 0.0
    open_streams = 2

    def emit(stream: str, raw: bytes) -> None:
        nonlocal stderr_count, last_output
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if is_progress is None or is_progress(stream, line):
            last_output = time.monotonic()
        if stream == "out":
            if capture_stdout:
                stdout_parts.append(line)
            if on_stdout_line is not None:
                on_stdout_line(line)
        else:
            stderr_count += 1
            masked = mask(line, secrets)
            tail.append(masked)
            if on_stderr_line is not None:
                on_stderr_line(masked)

    try:
        while open_streams:
            now = time.monotonic()
            waits = [1.0]
            if timeout is not None:
                waits.append(proc.started + timeout - now)
            if idle_timeout is not None:
                waits.append(last_output + idle_timeout - now)
            wait = max(0.0, min(waits))
            if watch is not None and now - last_watch >= 1.0:
                last_watch = now
                if watch():
                    last_output = now
            if timeout is not None and now - proc.started > timeout:
                proc.stop(stop_grace)
                raise CommandTimeout(
                    f"{os.path.basename(proc.argv[0])} did not finish within {timeout:.0f}s",
                    stderr_tail=list(tail),
                    idle=False,
                )
            if idle_timeout is not None and now - last_output > idle_timeout:
                proc.stop(stop_grace)
                raise CommandTimeout(
                    f"{os.path.basename(proc.argv[0])} made no progress for {idle_timeout:.0f}s",
                    stderr_tail=list(tail),
                    idle=True,
                )
            for key, _ in sel.select(wait):
                stream = key.data
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    if buffers[stream]:
                        emit(stream, buffers[stream])
                        buffers[stream] = b""
                    continue
                data = buffers[stream] + chunk
                *lines, rest = data.split(b"\n")
                buffers[stream] = rest
                for raw in lines:
                    emit(stream, raw)
        # Streams closed; wait for the exit status under the same clocks.
        while True:
            try:
                popen.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                if timeout is not None and time.monotonic() - proc.started > timeout:
                    proc.stop(stop_grace)
                    raise CommandTimeout(
                        f"{os.path.basename(proc.argv[0])} did not finish within {timeout:.0f}s",
                        stderr_tail=list(tail),
                        idle=False,
                    ) from None
    except (KeyboardInterrupt, Interrupted) as exc:
        proc.stop(stop_grace)
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted(f"interrupted while running {os.path.basename(proc.argv[0])}") from exc
    finally:
        sel.close()
        for stream in (popen.stdout, popen.stderr):
            stream.close()
        if writer is not None:
            writer.join(timeout=1)
        if popen.poll() is None:
            proc.stop(stop_grace)

    return Result(
        argv=proc.argv,
        returncode=popen.returncode,
        stdout="\n".join(stdout_parts),
        stderr_tail=list(tail),
        duration_s=time.monotonic() - proc.started,
        stderr_lines=stderr_count,
    )


def _start_service(argv: Sequence[str], *, log_path, stdin, env=None, cwd=None,
                   **popen_args) -> subprocess.Popen:
    """Popen a background process whose output goes to ``log_path`` (or nowhere).
    Raises :class:`ToolMissing` when the program does not exist."""
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        log.debug("start: %s", " ".join(str(a) for a in argv))
        return subprocess.Popen([str(a) for a in argv], stdin=stdin, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, env=child_env,
                                **popen_args)
    except FileNotFoundError as exc:
        raise ToolMissing(
            f"{argv[0]} not found", hint="run scripts/bootstrap to install the system tools"
        ) from exc
    finally:
        if log_path:
            out.close()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
    stop_signal: int = signal.SIGTERM,
) -> subprocess.Popen:
    """Start a long-running service (an Orthanc node, a test server) in the background;
    it receives ``stop_signal`` if drctl dies. The caller stops it with :func:`terminate`.
    Raises :class:`ToolMissing` when the program does not exist."""
    return _start_service(argv, log_path=log_path, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                          preexec_fn=_child_setup(stop_signal))  # noqa: PLW1509


def terminate(popen: subprocess.Popen, grace: float = 20.0, sig: int = signal.SIGTERM) -> int:
    """Stop a spawned service: ``sig``, wait ``grace`` seconds, then SIGKILL. Returns its
    exit status."""
    if popen.poll() is None:
        try:
            popen.send_signal(sig)
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        except ProcessLookupError:
            pass
    return popen.returncode


def which(program: str) -> str | None:
    """Path of ``program`` on PATH (or None)."""
    from shutil import which as _which

    return _which(program)


def spawn_guard(
    argv: Sequence[str], *, log_path: str | os.PathLike | None = None
) -> subprocess.Popen:
    """Start a helper that must outlive drctl and learns of drctl's end through its
    standard input: a pipe whose only write end drctl holds, so it reads EOF however drctl
    ends (SIGKILL included). Own session: a terminal's Ctrl-C does not reach it. The
    caller writes to and closes ``popen.stdin``."""
    return _start_service(argv, log_path=log_path, stdin=subprocess.PIPE,
                          start_new_session=True)


def spawn_detached(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
) -> int:
    """Start a service that must outlive drctl (a node started by a ``start`` command):
    its own session, no parent-death signal. Returns its PID."""
    return _start_service(argv, log_path=log_path, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                          start_new_session=True).pid


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` runs on this host. A zombie counts as gone; a PID that
    belongs to another user counts as alive."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
