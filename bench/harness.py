"""The benchmark harness: A/B repetitions interleaved, medians, ratios per repetition,
the environment (machine, versions, load), and profiles for figures that miss a target.

Every measured figure is the median of its repetitions. A ratio is the median of the
ratios of A and B measured next to each other (A then B, then B then A, ...), so a
machine that slows down or speeds up during the run shifts both sides of each ratio.
"""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Pairs:
    """Samples of A and B taken in pairs (same repetition)."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [x / y for x, y in zip(self.a, self.b, strict=False) if y > 0]

    @property
    def ratio(self) -> float:
        return median(self.ratios)


def interleaved(
    run_a: Callable[[int], float],
    run_b: Callable[[int], float],
    reps: int,
    pairs: Pairs | None = None,
) -> Pairs:
    """``reps`` repetitions of A and B, alternating which goes first (ABBA...). Each
    callable gets the repetition number and returns its measured figure."""
    pairs = pairs or Pairs()
    for rep in range(reps):
        if rep % 2 == 0:
            a = run_a(rep)
            b = run_b(rep)
        else:
            b = run_b(rep)
            a = run_a(rep)
        pairs.a.append(a)
        pairs.b.append(b)
    return pairs


@contextmanager
def stopwatch() -> Any:
    """``with stopwatch() as t: ...`` then ``t()`` is the block's wall time in seconds."""
    started = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - started
    end.append(time.perf_counter())


def children_cpu() -> float:
    """CPU seconds of every child process waited for so far (their children included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Row:
    """One line of the results table."""

    id: str
    what: str
    drctl: str  # the drctl figure, formatted
    reference: str  # the reference figure, formatted
    ratio: float | None  # the figure compared with the target
    ratio_text: str
    target: str
    met: bool | None
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    data: str = ""
    profile: str = ""
    extra: dict = field(default_factory=dict)


def ceiling_row(
    bench_id: str,
    what: str,
    pairs: Pairs,
    reference: str,
    ceiling: float,
    *,
    per: str = "",
    digits: int = 2,
    **fields: Any,
) -> Row:
    """A row whose target is ``ratio <= ceiling``: drctl's median, the reference's median
    and what the reference is, and the median of the paired ratios."""
    ratio = pairs.ratio
    return Row(
        bench_id,
        what,
        f"{fmt_s(median(pairs.a))}{per}",
        f"{fmt_s(median(pairs.b))}{per} ({reference})",
        ratio,
        f"{ratio:.{digits}f}x",
        f"<= {ceiling:g}x",
        ratio <= ceiling,
        **fields,
    )


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_samples(values: list[float], unit: str = "s") -> str:
    if unit == "s":
        return ", ".join(fmt_s(v) for v in values)
    return ", ".join(f"{v:.3g}" for v in values)


def profiled(fn: Callable[[], Any], *, top: int = 18, sort: str = "cumulative") -> tuple[Any, str]:
    """Run ``fn`` under cProfile; return its result and the top entries as text."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        result = fn()
    finally:
        profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = out.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    header = next((line.strip() for line in lines if "function calls" in line), "")
    return result, "\n".join([header, *lines[start:]])


@contextmanager
def subprocess_log() -> Any:
    """Record every child drctl runs through :mod:`drctl.execute` (argv head and
    seconds): what a profile of a subprocess-bound action cannot show by itself."""
    from drctl import execute

    calls: list[tuple[str, float]] = []
    original = execute.run

    def run(argv, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(argv, *args, **kwargs)
        finally:
            calls.append((_argv_head(argv), time.perf_counter() - started))

    execute.run = run
    try:
        yield calls
    finally:
        execute.run = original


def _argv_head(argv: list[str]) -> str:
    words = [Path(argv[0]).name]
    for word in argv[1:]:
        if word.startswith("-"):
            continue
        words.append(word)
        break
    return " ".join(words)


# --- environment -----------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5
        ) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except Exception as exc:  # the version line is informational
        return f"unknown ({type(exc).__name__})"


def _git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cs"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "drctl"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + (" (drctl/ has uncommitted changes)" if dirty else "")


def environment() -> dict[str, str]:
    """The machine and the versions of everything measured."""
    dcmtk = _first_line(["findscu", "--version"])
    orthanc = _first_line(["Orthanc", "--version"])
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "RAM": f"{_ram_gib():.1f} GiB",
        "OS": f"{platform.system()} {platform.release()} ({_os_release()})",
        "Python": sys.version.split()[0],
        "drctl": f"{metadata.version('drctl')} at {_git_head()}",
        "restic": _first_line(["restic", "version"]),
        "Orthanc": re.sub(r"\s+", " ", orthanc),
        "dcmtk": re.sub(r"^\$dcmtk: ", "", dcmtk).rstrip(" $"),
        "PostgreSQL": _postgres_version(),
        "pynetdicom / pydicom": f"{metadata.version('pynetdicom')} / {metadata.version('pydicom')}",
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
