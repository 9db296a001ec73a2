"""Start and stop an Orthanc node on this machine by PID file, for nodes whose ``start`` /
``stop`` commands have no service manager behind them (the demo, tests, hosts without
systemd):

    python -m drctl.pacs.orthanc.localctl start --config orthanc.json --pidfile orthanc.pid
    python -m drctl.pacs.orthanc.localctl stop --pidfile orthanc.pid

``start`` returns once the node's REST and DICOM ports accept connections; ``stop`` sends
SIGTERM (Orthanc closes its index cleanly) and returns once the process is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from drctl.execute import pid_alive, spawn_detached
from drctl.net import wait_for_port
from drctl.pacs.orthanc.process import orthanc_argv, orthanc_env


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start(config: Path, pidfile: Path, *, log: Path | None, no_jobs: bool, timeout: float) -> int:
    if read_pid(pidfile):
        print(f"already running (pid {read_pid(pidfile)})", file=sys.stderr)
        return 0
    settings = json.loads(config.read_text())
    argv = orthanc_argv(config, no_jobs=no_jobs)
    pid = spawn_detached(argv, env=orthanc_env(), cwd=config.parent,
                         log_path=log or config.with_suffix(".log"))
    pidfile.write_text(str(pid))
    host = "127.0.0.1"
    deadline = time.monotonic() + timeout
    for port in (settings.get("HttpPort", 8042), settings.get("DicomPort", 4242)):
        if not wait_for_port(host, int(port), max(0.1, deadline - time.monotonic())):
            print(f"Orthanc did not open port {port} within {timeout:.0f}s", file=sys.stderr)
            return 1
        if not pid_alive(pid):
            print("Orthanc exited during start-up", file=sys.stderr)
            return 1
    return 0


def stop(pidfile: Path, *, timeout: float) -> int:
    pid = read_pid(pidfile)
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drctl.pacs.orthanc.localctl")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--config", type=Path, required=True)
    p_start.add_argument("--pidfile", type=Path, required=True)
    p_start.add_argument("--log", type=Path)
    p_start.add_argument("--no-jobs", action="store_true")
    p_start.add_argument("--timeout", type=float, default=60.0)
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--pidfile", type=Path, required=True)
    p_stop.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.cmd == "start":
        return start(args.config, args.pidfile, log=args.log, no_jobs=args.no_jobs,
                     timeout=args.timeout)
    return stop(args.pidfile, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
