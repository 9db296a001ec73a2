"""Scales and value formats of the report's charts: 1-2-5 steps (powers of 1024 for
bytes), round durations (minutes, hours, days), a log scale for durations when the target
dwarfs the data, and UTC time ticks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LOG_WHEN_TARGET_OVER = 20.0  # target / largest value beyond which durations go log

MINUTE, HOUR, DAY = 60, 3600, 86400
# log-scale ticks of a duration axis
DURATION_TICKS = (1, 10, MINUTE, 10 * MINUTE, HOUR, 6 * HOUR, DAY, 7 * DAY, 30 * DAY, 365 * DAY)
# round steps of a linear duration axis and of time axes
TIME_STEPS = (
    *(1, 5, 10, 30),
    *(MINUTE * m for m in (1, 5, 10, 30)),
    *(HOUR * h for h in (1, 3, 6, 12)),
    *(DAY * d for d in (1, 2, 7, 14, 30, 91, 182, 365)),
)


# --- value formats -----------------------------------------------------------------------


def short_duration(seconds: float) -> str:
    """``42s``, ``10m``, ``1h 30m``, ``6h``, ``2d``: axis labels."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.1f}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m}m" if not s else f"{m}m {s}s"
    if seconds < 86400:
        h, m = divmod(round(seconds / 60), 60)
        return f"{h}h" if not m else f"{h}h {m:02d}m"
    d, h = divmod(round(seconds / 3600), 24)
    return f"{d}d" if not h else f"{d}d {h}h"


def short_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1024


def short_count(n: float) -> str:
    return f"{n:,.0f}" if abs(n) >= 1 or n == 0 else f"{n:.2f}"


FORMATS: dict[str, Callable[[float], str]] = {
    "duration": short_duration,
    "bytes": short_bytes,
    "count": short_count,
}


# --- scales --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """A value axis: ``lo``..``hi`` mapped onto pixels ``bottom``..``top``."""

    lo: float
    hi: float
    log: bool
    ticks: tuple[float, ...]

    def pixel(self, value: float, top: float, bottom: float) -> float:
        if self.log:
            value = max(value, self.lo)
            share = (math.log10(value) - math.log10(self.lo)) / (
                math.log10(self.hi) - math.log10(self.lo)
            )
        else:
            share = (value - self.lo) / (self.hi - self.lo)
        share = min(1.0, max(0.0, share))
        return bottom - share * (bottom - top)


def nice_step(span: float, count: int = 5) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``count`` parts."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def linear_scale(values: Sequence[float], *, unit: str) -> Scale:
    top = max([0.0, *values])
    if unit == "bytes" and top > 0:
        base = 1024 ** max(0, math.floor(math.log(top, 1024)))
        step = nice_step(top / base) * base
    else:
        step = nice_step(top)
        if unit == "count":
            step = max(1.0, round(step))
    hi = step * max(1, math.ceil(top / step - 1e-9))
    if hi <= top:
        hi += step
    ticks = tuple(step * i for i in range(int(round(hi / step)) + 1))
    return Scale(0.0, hi, False, ticks)


def duration_scale(values: Sequence[float], target: float | None) -> Scale:
    """Linear from 0, or log (between duration ticks) when ``target`` dwarfs the data."""
    data = [v for v in values if v is not None]
    largest = max(data, default=0.0)
    if target is None or target <= LOG_WHEN_TARGET_OVER * max(largest, 1e-9) or not data:
        scale = linear_scale([*data, *([target] if target else [])], unit="duration")
        return _duration_steps(scale)
    positive = [v for v in data if v > 0] or [1.0]
    low, high = min(positive), max(largest, target)
    lo = max([t for t in DURATION_TICKS if t <= low], default=DURATION_TICKS[0])
    hi = min([t for t in DURATION_TICKS if t >= high], default=high)
    if hi <= lo:
        hi = lo * 10
    ticks = tuple(t for t in DURATION_TICKS if lo <= t <= hi)
    return Scale(float(lo), float(hi), True, ticks)


def _duration_steps(scale: Scale) -> Scale:
    """A linear duration axis on round steps (minutes, hours) rather than 1-2-5 seconds."""
    top = scale.hi
    for step in (*TIME_STEPS, top):
        if top / step <= 6:
            break
    hi = step * max(1, math.ceil(scale.ticks[-1] / step - 1e-9)) if scale.ticks else step
    ticks = tuple(step * i for i in range(int(round(hi / step)) + 1))
    return Scale(0.0, float(hi), False, ticks)


def time_ticks(start: float, end: float, count: int = 6) -> tuple[list[float], str]:
    """Round UTC tick positions between two epoch times and their strftime format."""
    span = max(end - start, 1.0)
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    first = math.ceil(start / step) * step
    ticks = [first + i * step for i in range(int((end - first) // step) + 1)]
    if step >= 86400:
        fmt = "%Y-%m-%d"
    elif span >= 86400:
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    return ticks, fmt
