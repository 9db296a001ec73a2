"""Start and stop a local Orthanc process from an :class:`OrthancSpec`.

The configuration is written into the node's work folder, Orthanc's output goes to a
log file there, and ``TCP_NODELAY=1`` is always in its environment (Nagle's algorithm
costs ~90 ms per stored instance otherwise). A node is ready when its REST API answers
``/system`` and its DICOM port accepts TCP. ``--no-jobs`` keeps a node started on a
restored production index from resuming the jobs saved in it (a transfer to a real
peer, for instance).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from drctl.errors import DrctlError, NodeUnreachable
from drctl.execute import spawn, terminate
from drctl.net import port_open
from drctl.pacs.orthanc.nodeconfig import OrthancSpec, write
from drctl.pacs.orthanc.rest import OrthancRest

ORTHANC_BINARY = "Orthanc"
LOG_TAIL_LINES = 30
POLL_INTERVAL = 0.1
PROBE_TIMEOUT = 2.0


def orthanc_argv(
    config_path: Path,
    *,
    no_jobs: bool = False,
    verbose: bool = False,
    binary: str = ORTHANC_BINARY,
) -> list[str]:
    """argv that starts Orthanc on ``config_path``."""
    argv = [binary]
    if no_jobs:
        argv.append("--no-jobs")
    if verbose:
        argv.append("--verbose")
    return [*argv, str(config_path)]


def orthanc_env() -> dict[str, str]:
    """Environment additions for an Orthanc process."""
    return {"TCP_NODELAY": "1"}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


class OrthancProcess:
    """A running Orthanc node started by :func:`launch`; stop it with :meth:`stop`."""

    def __init__(
        self,
        spec: OrthancSpec,
        popen: subprocess.Popen,
        *,
        config_path: Path,
        log_path: Path,
        argv: list[str],
    ):
        self.spec = spec
        self.popen = popen
        self.config_path = config_path
        self.log_path = log_path
        self.argv = argv
        user = next(iter(spec.http_users.items()), None)
        credentials = {"username": user[0], "password": user[1]} if user else {}
        self.rest = OrthancRest(spec.rest_url, **credentials)
        # Readiness probes must not hang on a port something else holds.
        self._probe = OrthancRest(spec.rest_url, timeout=PROBE_TIMEOUT, **credentials)

    def __repr__(self) -> str:
        return f"OrthancProcess({self.spec.name!r}, pid={self.pid}, {self.spec.rest_url})"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def no_jobs(self) -> bool:
        return "--no-jobs" in self.argv

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def stop(self, grace: float = 20.0) -> int | None:
        """Stop Orthanc cleanly (SIGTERM: it saves its jobs and closes its index), SIGKILL
        after ``grace`` seconds. Returns the exit status."""
        return terminate(self.popen, grace=grace)

    def kill(self) -> int | None:
        """SIGKILL at once (a crash, for fault tests). Returns the exit status."""
        return terminate(self.popen, grace=0, sig=signal.SIGKILL)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the node's log."""
        return _tail(self.log_path, lines)

    def ready(self) -> bool:
        """True when the REST API answers and the DICOM port accepts TCP."""
        if not port_open(self.spec.host, self.spec.dicom_port, timeout=0.5):
            return False
        try:
            self._probe.system()
        except DrctlError:
            return False
        return True

    def wait_ready(self, timeout: float) -> None:
        """Wait until :meth:`ready`; raises :class:`NodeUnreachable` (log tail in
        ``detail``) if Orthanc exits or is not ready within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise NodeUnreachable(
                    f"Orthanc node {self.spec.name!r} exited with status "
                    f"{self.popen.returncode} during start-up",
                    hint=f"see {self.log_path}",
                    detail=self.log_tail(),
                )
            if self.ready():
                return
            time.sleep(POLL_INTERVAL)
        raise NodeUnreachable(
            f"Orthanc node {self.spec.name!r} was not ready within {timeout:.0f}s "
            f"(REST {self.spec.rest_url}, DICOM port {self.spec.dicom_port})",
            hint=f"see {self.log_path}",
            detail=self.log_tail(),
        )

    def __enter__(self) -> OrthancProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def launch(
    spec: OrthancSpec,
    workdir: str | os.PathLike,
    *,
    no_jobs: bool = False,
    log_path: str | os.PathLike | None = None,
    ready_timeout: float = 60.0,
    verbose: bool = False,
) -> OrthancProcess:
    """Write ``spec``'s configuration into ``workdir``, start Orthanc and wait until it
    is ready. Returns the running :class:`OrthancProcess`.

    Raises :class:`~drctl.errors.ToolMissing` when Orthanc is not installed and
    :class:`NodeUnreachable` (with the last log lines in ``detail``) when it exits or is
    not ready in time; the process is stopped before raising.
    """
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    spec.storage_dir.mkdir(parents=True, exist_ok=True)
    spec.index_dir.mkdir(parents=True, exist_ok=True)
    config_path = write(spec, folder / "orthanc.json")
    log_file = Path(log_path) if log_path is not None else folder / "orthanc.log"
    argv = orthanc_argv(config_path, no_jobs=no_jobs, verbose=verbose)
    popen = spawn(argv, env=orthanc_env(), cwd=folder, log_path=log_file)
    node = OrthancProcess(spec, popen, config_path=config_path, log_path=log_file, argv=argv)
    try:
        node.wait_ready(ready_timeout)
    except BaseException:
        node.stop(grace=5.0)
        raise
    return node
