"""B6: an idle ``drctl scheduler run``: resident memory and CPU time.

Three daemons (the repetitions), each with a configuration of its own (a primary of
agent ``bench`` with a daily backup and a weekly check, nothing due within the minute,
a SQLite catalog), are started when the run begins and sampled from ``/proc`` every
second while the other benchmarks run (an idle daemon's CPU time does not depend on
what else the machine does). The idle window starts 5 s after the daemon announced
itself; its CPU time, the start-up CPU time and the peak RSS (VmHWM) are reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.fixtures import Fixtures
from bench.harness import Row, median
from tests.support.drctl_env import DRCTL, make_env

DAEMONS = 3
SETTLE_S = 5.0
ANNOUNCE = "scheduler for agent"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Daemon:
    popen: subprocess.Popen
    log: Path
    launched: float
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    announced: float | None = None

    def sample(self) -> None:
        """(monotonic time, CPU seconds incl. reaped children, RSS kB, peak RSS kB)."""
        try:
            stat = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{self.popen.pid}/status").read_text()
        except OSError:
            return
        cpu = sum(int(x) for x in stat[11:15]) / TICKS  # utime stime cutime cstime
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(fields.get("VmRSS", "0 kB").split()[0])
        peak = int(fields.get("VmHWM", "0 kB").split()[0])
        self.samples.append((time.monotonic(), cpu, rss, peak))
        if self.announced is None and ANNOUNCE in self.log.read_text(errors="replace"):
            self.announced = time.monotonic()


@dataclass
class Pending:
    daemons: list[Daemon]
    idle_s: float
    stop: threading.Event
    sampler: threading.Thread


def start(fx: Fixtures) -> Pending:
    daemons = []
    for n in range(DAEMONS):
        folder = fx.root / f"b6-{n}"
        (folder / "storage").mkdir(parents=True, exist_ok=True)
        env = make_env(
            folder / "drctl",
            repositories={"local": {"url": str(folder / "repo")}},
            nodes={
                "primary": {
                    "kind": "orthanc",
                    "aet": "IDLE",
                    "host": "127.0.0.1",
                    "port": 4242,
                    "rest": "http://127.0.0.1:8042",
                    "storage": str(folder / "storage"),
                    "index": f"sqlite:{folder / 'storage' / 'index'}",
                    "index_copy": "stop-start",
                    "start": ["true"],
                    "stop": ["true"],
                    "agent": "bench",
                }
            },
            schedule={"backup": "cron:0 3 * * *", "check": "cron:0 4 * * 0"},
        )
        env.cli("repo", "init", check_exit=0)
        log = folder / "daemon.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [DRCTL, "--config", str(env.config_path), "scheduler", "run", "--agent", "bench"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        daemons.append(Daemon(popen, log, time.monotonic()))
    stop = threading.Event()

    def sample_all() -> None:
        while not stop.wait(1.0):
            for daemon in daemons:
                daemon.sample()

    sampler = threading.Thread(target=sample_all, name="bench-b6", daemon=True)
    sampler.start()
    return Pending(daemons, fx.sizes.scheduler_idle_s, stop, sampler)


def finish(pending: Pending) -> list[Row]:
    """Wait until every daemon had its idle window, stop them, make the row."""
    deadline = time.monotonic() + 120 + pending.idle_s
    try:
        while time.monotonic() < deadline:
            ready = [
                d.announced is not None
                and time.monotonic() - d.announced >= SETTLE_S + pending.idle_s + 1
                for d in pending.daemons
            ]
            if all(ready) or any(d.popen.poll() is not None for d in pending.daemons):
                break
            time.sleep(1.0)
    finally:
        pending.stop.set()
        pending.sampler.join()
        for daemon in pending.daemons:
            if daemon.popen.poll() is None:
                daemon.popen.send_signal(signal.SIGTERM)
        for daemon in pending.daemons:
            try:
                daemon.popen.wait(30)
            except subprocess.TimeoutExpired:
                daemon.popen.kill()
                daemon.popen.wait()
    dead = [d for d in pending.daemons if d.announced is None]
    if dead:
        raise RuntimeError(
            "a scheduler daemon never announced itself:\n"
            + dead[0].log.read_text(errors="replace")[-2000:]
        )
    idle_cpu, startup_cpu, peak_rss = [], [], []
    for daemon in pending.daemons:
        begin = daemon.announced + SETTLE_S  # type: ignore[operator]
        window = [s for s in daemon.samples if begin <= s[0] <= begin + pending.idle_s + 1.5]
        first = window[0]
        last = min(window, key=lambda s: abs(s[0] - (first[0] + pending.idle_s)))
        idle_cpu.append((last[1] - first[1]) * pending.idle_s / max(last[0] - first[0], 1e-9))
        startup_cpu.append(first[1])
        peak_rss.append(max(s[3] for s in daemon.samples) / 1024)
    rss, cpu = median(peak_rss), median(idle_cpu)
    met = rss <= 100 and cpu <= 1.0
    row = Row(
        "B6",
        f"idle scheduler run, {pending.idle_s:.0f} s",
        f"RSS {rss:.0f} MB, CPU {cpu:.2f} s",
        "-",
        None,
        "-",
        "RSS <= 100 MB, CPU <= 1 s",
        met,
        data=(
            f"{DAEMONS} daemons (SQLite catalog, one primary with daily backup and "
            "weekly check schedules), sampled from /proc every second"
        ),
        samples={"peak RSS MB": peak_rss, "idle CPU s": idle_cpu, "start-up CPU s": startup_cpu},
    )
    row.notes.append(
        f"CPU until {SETTLE_S:.0f} s after start-up (imports, catalog, lease): "
        f"{median(startup_cpu):.2f} s, not part of the idle figure"
    )
    return [row]


def run_alone(fx: Fixtures) -> list[Row]:
    return finish(start(fx))
