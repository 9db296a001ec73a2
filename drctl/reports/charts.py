"""Charts for reports as inline SVG, drawn here (no plotting library, no script, no external
resource): the page opens offline, from an e-mail attachment, and prints.

Two kinds: :func:`time_chart` (lines over real time, e.g. the RPO sawtooth) and
:func:`category_chart` (one slot per item, bars and/or lines, e.g. per drill or per
snapshot; several panels may share the slots). Durations get a log scale when the
target dwarfs the data (a 4 s RTO under a 4 h target would be an invisible bar on a
linear axis); the axis says so. Every drawn element carries a class (``series``,
``bar``, ``point``, ``target``) so tests can find it in the browser's DOM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH = 860
PANEL_HEIGHT = 190
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 30, 34
PALETTE = ("#2271b1", "#8c5e00", "#6b3fa0", "#00838f", "#5b6b00", "#a0306b")
PASSED, FAILED, TARGET, AXIS, GRID = "#1e7e34", "#b32d2e", "#b32d2e", "#50575e", "#e4e4e7"
LOG_WHEN_TARGET_OVER = 20.0  # target / largest value beyond which durations go log

DURATION_TICKS = (
    1,
    10,
    60,
    600,
    3600,
    6 * 3600,
    86400,
    7 * 86400,
    30 * 86400,
    365 * 86400,
)
TIME_STEPS = (
    1,
    5,
    10,
    30,
    60,
    300,
    600,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
    91 * 86400,
    182 * 86400,
    365 * 86400,
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
    return f"{n:.1f} PiB"


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


# --- drawing -------------------------------------------------------------------------------


@dataclass
class Series:
    """A line: (x, y) points; ``x`` is an epoch time (time charts) or a slot index."""

    name: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]
    markers: bool = True


@dataclass
class Bar:
    label: str
    value: float | None
    color: str = PALETTE[0]
    title: str = ""
    note: str = ""  # shown over the bar (e.g. "*" for a projected RTO)
    css: str = ""


@dataclass
class Panel:
    """One plot of a category chart: bars and/or lines over the shared slots."""

    unit: str  # duration | bytes | count
    bars: list[Bar] = field(default_factory=list)
    lines: list[Series] = field(default_factory=list)
    target: float | None = None
    target_label: str = "target"
    label: str = ""


class _Svg:
    def __init__(self, chart_id: str, title: str, height: float):
        self.parts: list[str] = []
        self.chart_id, self.title, self.height = chart_id, title, height

    def add(self, tag: str, text: str | None = None, **attrs) -> None:
        rendered = " ".join(
            f'{k.rstrip("_").replace("_", "-")}="{escape(str(v))}"'
            for k, v in attrs.items()
            if v is not None
        )
        if text is None:
            self.parts.append(f"<{tag} {rendered}/>")
        else:
            self.parts.append(f"<{tag} {rendered}>{escape(text)}</{tag}>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def markup(self) -> Markup:
        head = (
            f'<svg class="chart" id="{escape(self.chart_id)}" data-chart="{escape(self.chart_id)}" '
            f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {self.height:.0f}" '
            f'role="img" aria-label="{escape(self.title)}" preserveAspectRatio="xMidYMid meet">'
            f"<title>{escape(self.title)}</title>"
        )
        return Markup(head + "".join(self.parts) + "</svg>")


def _y_axis(svg: _Svg, scale: Scale, unit: str, top: float, bottom: float) -> None:
    fmt = FORMATS[unit]
    for tick in scale.ticks:
        y = scale.pixel(tick, top, bottom)
        svg.add(
            "line",
            x1=MARGIN_LEFT,
            x2=WIDTH - MARGIN_RIGHT,
            y1=f"{y:.1f}",
            y2=f"{y:.1f}",
            stroke=GRID,
            class_="grid",
        )
        svg.add(
            "text", fmt(tick), x=MARGIN_LEFT - 6, y=f"{y + 4:.1f}", text_anchor="end", class_="tick"
        )
    svg.add("line", x1=MARGIN_LEFT, x2=MARGIN_LEFT, y1=top, y2=bottom, stroke=AXIS, class_="axis")
    svg.add(
        "line",
        x1=MARGIN_LEFT,
        x2=WIDTH - MARGIN_RIGHT,
        y1=bottom,
        y2=bottom,
        stroke=AXIS,
        class_="axis",
    )
    if scale.log:
        svg.add("text", "log scale", x=MARGIN_LEFT + 4, y=top - 6, class_="note")


def _target(svg: _Svg, scale: Scale, value: float, label: str, top: float, bottom: float) -> None:
    y = scale.pixel(value, top, bottom)
    svg.add(
        "line",
        x1=MARGIN_LEFT,
        x2=WIDTH - MARGIN_RIGHT,
        y1=f"{y:.1f}",
        y2=f"{y:.1f}",
        stroke=TARGET,
        stroke_width=1.5,
        stroke_dasharray="6 4",
        class_="target",
        data_value=f"{value:g}",
    )
    svg.add(
        "text",
        f"{label} {short_duration(value)}",
        x=WIDTH - MARGIN_RIGHT - 4,
        y=f"{y - 5:.1f}",
        text_anchor="end",
        fill=TARGET,
        class_="target-label",
    )


def _legend(svg: _Svg, items: list[tuple[str, str]], y: float = 14) -> None:
    x = WIDTH - MARGIN_RIGHT
    for name, color in reversed(items):
        width = 7 * len(name) + 22
        x -= width
        svg.add("rect", x=x, y=y - 9, width=10, height=10, fill=color, class_="legend-key")
        svg.add("text", name, x=x + 14, y=y, class_="legend")


def _empty(svg: _Svg, message: str, top: float, bottom: float) -> None:
    svg.add(
        "text", message, x=WIDTH / 2, y=(top + bottom) / 2, text_anchor="middle", class_="empty"
    )


def _polyline(svg: _Svg, series: Series, points: list[tuple[float, float]]) -> None:
    if not points:
        return
    svg.add(
        "polyline",
        points=" ".join(f"{x:.1f},{y:.1f}" for x, y in points),
        fill="none",
        stroke=series.color,
        stroke_width=2,
        class_="series",
        data_series=series.name,
    )
    if series.markers and len(points) <= 120:
        for x, y in points:
            svg.add(
                "circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r=2.8, fill=series.color, class_="point"
            )


def time_chart(
    chart_id: str,
    title: str,
    series: list[Series],
    *,
    unit: str = "duration",
    target: float | None = None,
    target_label: str = "target",
    start: float | None = None,
    end: float | None = None,
    empty: str = "no data in this period",
) -> Markup:
    """Lines over time (x: epoch seconds, UTC); a dashed target line when given."""
    height = PANEL_HEIGHT + MARGIN_TOP + MARGIN_BOTTOM
    svg = _Svg(chart_id, title, height)
    top, bottom = MARGIN_TOP, MARGIN_TOP + PANEL_HEIGHT
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    if not xs:
        _empty(svg, empty, top, bottom)
        return svg.markup()
    t0 = start if start is not None else min(xs)
    t1 = end if end is not None else max(xs)
    if t1 <= t0:
        t1 = t0 + 60
    scale = duration_scale(ys, target) if unit == "duration" else linear_scale(ys, unit=unit)
    _y_axis(svg, scale, unit, top, bottom)
    right = WIDTH - MARGIN_RIGHT

    def px(t: float) -> float:
        return MARGIN_LEFT + (t - t0) / (t1 - t0) * (right - MARGIN_LEFT)

    ticks, fmt = time_ticks(t0, t1)
    for t in ticks:
        x = px(t)
        svg.add("line", x1=f"{x:.1f}", x2=f"{x:.1f}", y1=bottom, y2=bottom + 4, stroke=AXIS)
        label = datetime.fromtimestamp(t, UTC).strftime(fmt)
        svg.add("text", label, x=f"{x:.1f}", y=bottom + 17, text_anchor="middle", class_="tick")
    svg.add("text", "UTC", x=right, y=bottom + 30, text_anchor="end", class_="note")
    if target is not None:
        _target(svg, scale, target, target_label, top, bottom)
    for s in series:
        points = [(px(x), scale.pixel(y, top, bottom)) for x, y in s.points if t0 <= x <= t1]
        _polyline(svg, s, points)
    if len(series) > 1:
        _legend(svg, [(s.name, s.color) for s in series])
    return svg.markup()


def category_chart(
    chart_id: str,
    title: str,
    labels: list[str],
    panels: list[Panel],
    *,
    empty: str = "no data in this period",
    legend: list[tuple[str, str]] | None = None,
) -> Markup:
    """One slot per label; each panel draws its bars and lines over the same slots, stacked
    vertically. Only the last panel labels the slots (at most ~12 labels)."""
    gap = 26
    height = MARGIN_TOP + len(panels) * PANEL_HEIGHT + (len(panels) - 1) * gap + MARGIN_BOTTOM
    svg = _Svg(chart_id, title, height)
    if not labels:
        _empty(svg, empty, MARGIN_TOP, MARGIN_TOP + PANEL_HEIGHT)
        return svg.markup()
    right = WIDTH - MARGIN_RIGHT
    slot = (right - MARGIN_LEFT) / len(labels)

    def center(i: float) -> float:
        return MARGIN_LEFT + (i + 0.5) * slot

    for n, panel in enumerate(panels):
        top = MARGIN_TOP + n * (PANEL_HEIGHT + gap)
        bottom = top + PANEL_HEIGHT
        values = [b.value for b in panel.bars if b.value is not None]
        values += [y for s in panel.lines for _, y in s.points]
        if panel.unit == "duration":
            scale = duration_scale(values, panel.target)
        else:
            scale = linear_scale(values, unit=panel.unit)
        _y_axis(svg, scale, panel.unit, top, bottom)
        if panel.label:
            svg.add(
                "text",
                panel.label,
                x=MARGIN_LEFT + (90 if scale.log else 4),
                y=top - 6,
                class_="panel-label",
            )
        width = max(2.0, min(40.0, slot * 0.7))
        for i, bar in enumerate(panel.bars):
            _bar(svg, scale, panel.unit, bar, (center(i), width), (top, bottom))
        if panel.target is not None:
            _target(svg, scale, panel.target, panel.target_label, top, bottom)
        for s in panel.lines:
            points = [(center(i), scale.pixel(y, top, bottom)) for i, y in s.points]
            _polyline(svg, s, points)
    bottom = MARGIN_TOP + len(panels) * PANEL_HEIGHT + (len(panels) - 1) * gap
    every = max(1, math.ceil(len(labels) / 12))
    for i, label in enumerate(labels):
        if i % every == 0:
            svg.add(
                "text",
                label,
                x=f"{center(i):.1f}",
                y=bottom + 17,
                text_anchor="middle",
                class_="tick",
            )
    if legend:
        _legend(svg, legend)
    return svg.markup()


def _bar(
    svg: _Svg,
    scale: Scale,
    unit: str,
    bar: Bar,
    where: tuple[float, float],
    rows: tuple[float, float],
) -> None:
    """A bar centred at ``where`` = (x, width) between ``rows`` = (top, bottom); its value
    (or its note) written over it when there is room."""
    (x, width), (top, bottom) = where, rows
    if bar.value is None:
        svg.add("text", "n/a", x=f"{x:.1f}", y=bottom - 4, text_anchor="middle", class_="note")
        return
    y = scale.pixel(bar.value, top, bottom)
    height = max(1.0, bottom - y)  # a zero still shows as a hairline
    css = " ".join(c for c in ("bar", bar.css) if c)
    svg.raw(
        f'<rect class="{escape(css)}" x="{x - width / 2:.1f}" y="{bottom - height:.1f}" '
        f'width="{width:.1f}" height="{height:.1f}" fill="{escape(bar.color)}" '
        f'data-value="{bar.value:g}"><title>{escape(bar.title or bar.label)}</title></rect>'
    )
    text = (FORMATS[unit](bar.value) if width >= 24 else "") + bar.note
    if text:
        svg.add(
            "text",
            text,
            x=f"{x:.1f}",
            y=f"{bottom - height - 4:.1f}",
            text_anchor="middle",
            class_="bar-note",
        )
