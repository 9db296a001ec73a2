"""Helpers for replication tests: a loader that keeps C-STOREs coming while drctl works,
independent views of a node's studies (C-FIND, the change feed), and ways to stop a
running ``drctl`` at a chosen moment with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drctl.dicom.client import DicomClient
from drctl.dicom.peers import Peer
from drctl.errors import DrctlError
from drctl.sample import SampleArchive
from tests.support.drctl_env import DRCTL, DrctlEnv
from tests.support.nodes import ManagedNode


class Loader(threading.Thread):
    """Stores ``archive`` into ``node`` one study at a time, ``pause`` seconds apart,
    retrying a study while the node is down (a stop-start index copy): a modality's
    behaviour. ``stored`` lists the study UIDs the node accepted."""

    def __init__(self, node: ManagedNode, archive: SampleArchive, pause: float = 0.25):
        super().__init__(daemon=True)
        self.node, self.archive, self.pause = node, archive, pause
        self.stored: list[str] = []
        self.retries = 0
        self.error: Exception | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            for study in self.archive.studies:
                paths = [i.path for i in self.archive.instances_of(study.study_uid)]
                self._store(paths)
                self.stored.append(study.study_uid)
                if self.halt.wait(self.pause):
                    return
        except Exception as exc:  # reported by finish()
            self.error = exc

    def _store(self, paths: list[Path]) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.node.load(paths)
                return
            except DrctlError:
                self.retries += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.stored) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"only {len(self.stored)} studies stored"
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> list[str]:
        self.join(timeout)
        assert not self.is_alive(), "the loader did not finish"
        assert self.error is None, self.error
        return self.stored


def cfind_study_uids(node: ManagedNode) -> set[str]:
    """Study UIDs a node answers to a study-level wildcard C-FIND (its index's view)."""
    peer = Peer(node.spec.aet, "127.0.0.1", node.spec.dicom_port)
    with DicomClient("DRCTL", timeout=20).open(peer) as session:
        return {record.study_uid for record in session.find_studies()}


def new_studies_up_to(node: ManagedNode, position: int) -> int:
    """How many studies the node had received at change ``position`` (NewStudy changes
    with a sequence up to it; no study is deleted in these tests)."""
    count, since = 0, 0
    while True:
        page = node.rest.changes(since=since, limit=1000)
        for change in page["Changes"]:
            if change["Seq"] <= position and change["ChangeType"] == "NewStudy":
                count += 1
        if page["Done"] or not page["Changes"]:
            return count
        since = page["Last"]


def spawn_cli(env: DrctlEnv, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
    """Start ``drctl --json ARGS`` in the background (to be killed mid-way)."""
    return subprocess.Popen(
        [DRCTL, "--config", str(env.config_path), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env.env, **(extra_env or {})},
    )


def kill_when(
    proc: subprocess.Popen,
    condition: Callable[[], bool],
    *,
    timeout: float = 90,
    poll: float = 0.002,
) -> None:
    """SIGKILL ``proc`` as soon as ``condition()`` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"drctl ended (exit {proc.returncode}) before the kill point: "
                f"{out.decode()[-500:]} {err.decode()[-1500:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("kill point not reached in time")
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Wait until process ``pid`` has exited."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return
        except OSError:
            return
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.05)
