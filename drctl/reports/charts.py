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
from dataclasses import dataclass, field
from datetime import UTC, datetime

from markupsafe import Markup, escape

from drctl.reports.scales import (
    FORMATS,
    Scale,
    duration_scale,
    linear_scale,
    short_duration,
    time_ticks,
)

WIDTH = 860
PANEL_HEIGHT = 190
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 30, 34
PALETTE = ("#2271b1", "#8c5e00", "#6b3fa0", "#00838f", "#5b6b00", "#a0306b")
PASSED, FAILED, TARGET, AXIS, GRID = "#1e7e34", "#b32d2e", "#b32d2e", "#50575e", "#e4e4e7"

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
