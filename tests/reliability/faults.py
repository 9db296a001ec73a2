"""Fault injection from outside drctl: wrapper executables placed first on the PATH of the
drctl process (``restic``, ``pg_dump``) or in a node's ``stop`` command, which leave a
marker file when drctl reaches a chosen point and then hold there; and helpers that look
at what a killed run left behind (the catalog's runs, the repository's snapshots)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.drctl_env import DrctlEnv

REAL_RESTIC = "/usr/bin/restic"
REAL_PG_DUMP = "/usr/bin/pg_dump"

# restic: FAULT_POINT=upload throttles the storage snapshot's upload, freezes the real restic
# at its first progress line and leaves the marker (holding its PID); FAULT_POINT=manifest holds
# the manifest record's ``backup --stdin`` before restic runs; FAULT_POINT=hold holds the
# storage snapshot until FAULT_RELEASE exists.
RESTIC_WRAPPER = f"""\
import os, signal, subprocess, sys, time
REAL = {REAL_RESTIC!r}
args = sys.argv[1:]
point, marker = os.environ.get("FAULT_POINT"), os.environ.get("FAULT_MARKER", "")
storage = "backup" in args and "--stdin" not in args
if point == "upload" and storage:
    proc = subprocess.Popen([REAL, "--limit-upload", "32", *args], stdout=subprocess.PIPE)
    for line in proc.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        if b'"status"' in line and not os.path.exists(marker):
            # frozen mid-run, its lock held and its snapshot not yet saved: the kill
            # that follows cannot come too late, whatever is left to upload
            os.kill(proc.pid, signal.SIGSTOP)
            with open(marker + ".tmp", "w") as fh:
                fh.write(str(proc.pid))
            os.rename(marker + ".tmp", marker)
    sys.exit(proc.wait())
if point == "manifest" and "--stdin" in args and "kind:manifest" in args:
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)
    sys.exit(1)
if point == "hold" and storage:
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    while not os.path.exists(os.environ["FAULT_RELEASE"]):
        time.sleep(0.05)
os.execv(REAL, [REAL, *args])
"""

PG_DUMP_WRAPPER = f"""\
import os, sys, time
if os.environ.get("FAULT_POINT") == "index":
    with open(os.environ["FAULT_MARKER"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)
os.execv({REAL_PG_DUMP!r}, ["pg_dump", *sys.argv[1:]])
"""

# A node's stop command that stops the node, leaves the marker, and then takes its time.
SLOW_STOP = """\
import os, subprocess, sys, time
code = subprocess.call(sys.argv[1:])
with open(os.environ["FAULT_MARKER"], "w") as fh:
    fh.write(str(os.getpid()))
time.sleep(600)
sys.exit(code)
"""


def install(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"#!{sys.executable}\n{source}")
    script.chmod(0o755)
    return script


def fault_env(folder: Path, point: str) -> dict:
    """The environment of a drctl process whose restic and pg_dump are the wrappers."""
    install(folder, "restic", RESTIC_WRAPPER)
    install(folder, "pg_dump", PG_DUMP_WRAPPER)
    return {
        "PATH": f"{folder}:{os.environ['PATH']}",
        "FAULT_POINT": point,
        "FAULT_MARKER": str(folder / f"marker-{point}"),
        "FAULT_RELEASE": str(folder / f"release-{point}"),
    }


def spawn(env: DrctlEnv, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
    from tests.support.drctl_env import DRCTL

    return subprocess.Popen(
        [DRCTL, "--config", str(env.config_path), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env.env, **(extra_env or {})},
    )


def wait_for(
    condition: Callable[[], bool],
    proc: subprocess.Popen | None = None,
    timeout: float = 90,
    what: str = "the fault point",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"drctl ended (exit {proc.returncode}) before {what}: "
                f"{out.decode()[-500:]} {err.decode()[-1500:]}"
            )
        assert time.monotonic() < deadline, f"{what} not reached in time"
        time.sleep(0.01)


def sigkill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def finish(proc: subprocess.Popen) -> None:
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()


def runs(env: DrctlEnv) -> list[dict]:
    """The catalog's runs, read directly (SQLite catalog)."""
    path = env.root / "state" / "catalog.db"
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT id, kind, state, reason FROM runs")]


def catalog_snapshot_ids(env: DrctlEnv) -> set[str]:
    path = env.root / "state" / "catalog.db"
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT snapshot_id FROM snapshots")}


def verified_listing(env: DrctlEnv) -> list[dict]:
    """``snapshots list --verify-repository``: exit 0 only when restic has every one."""
    proc = env.cli("snapshots", "list", "--verify-repository", check_exit=None)
    listing = json.loads(proc.stdout)
    assert proc.returncode == 0, (proc.stderr, listing)
    assert all(row["in_repository"] for row in listing), listing
    return listing
