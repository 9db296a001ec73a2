"""The report's SVG charts, drawn in Python: well-formed, self-contained SVG whose lines,
bars and target lines sit where their values say, on scales a person can read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from drctl.reports import charts, scales
from drctl.reports.charts import (
    MARGIN_LEFT,
    MARGIN_TOP,
    PANEL_HEIGHT,
    WIDTH,
    Bar,
    Panel,
    Series,
    category_chart,
    time_chart,
)
from drctl.reports.scales import duration_scale, linear_scale, time_ticks

SVG = "{http://www.w3.org/2000/svg}"
TOP, BOTTOM = MARGIN_TOP, MARGIN_TOP + PANEL_HEIGHT
T0 = datetime(2024, 6, 1, tzinfo=UTC).timestamp()


def parse(markup) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


def find(root: ET.Element, tag: str, css: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if css in (e.get("class") or "").split()]


def texts(root: ET.Element, css: str | None = None) -> list[str]:
    return [
        e.text or ""
        for e in root.iter(f"{SVG}text")
        if css is None or css in (e.get("class") or "").split()
    ]


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]


# --- scales -----------------------------------------------------------------------------


def test_durations_go_log_only_when_the_target_dwarfs_the_data() -> None:
    small = duration_scale([4.0, 7.5, 3.8], 4 * 3600)  # drill RTOs of seconds, target 4h
    assert small.log and small.lo == 1 and small.hi == 6 * 3600
    assert small.ticks == (1, 10, 60, 600, 3600, 6 * 3600)
    near = duration_scale([2 * 3600, 5 * 3600], 4 * 3600)  # comparable: linear from 0
    assert not near.log and near.lo == 0 and near.hi >= 5 * 3600
    assert all(t % 3600 == 0 for t in near.ticks)  # whole hours, not 1-2-5 seconds
    assert not duration_scale([], 4 * 3600).log


@pytest.mark.parametrize(
    ("values", "unit", "hi", "step"),
    [
        ([6, 8, 12], "count", 14, 2),
        ([623 * 1024, 940 * 1024], "bytes", 1000 * 1024, 200 * 1024),
        ([3 * 2**40], "bytes", 4 * 2**40, 2**40),
        ([0, 0], "count", 1, 1),
    ],
)
def test_linear_scales_end_on_a_round_step_above_the_data(values, unit, hi, step) -> None:
    scale = linear_scale(values, unit=unit)
    assert scale.lo == 0 and scale.hi == hi and scale.hi > max(values)
    assert scale.ticks[1] - scale.ticks[0] == step


def test_time_ticks_are_round_and_labelled_for_the_span() -> None:
    ticks, fmt = time_ticks(T0 + 5, T0 + 95)
    assert fmt == "%H:%M:%S" and all(t % 30 == 0 for t in ticks) and len(ticks) <= 6
    ticks, fmt = time_ticks(T0, T0 + 30 * 86400)
    assert fmt == "%Y-%m-%d" and all(t % 86400 == 0 for t in ticks)
    assert time_ticks(T0, T0 + 3 * 86400)[1] == "%m-%d %H:%M"


def test_value_labels_read_like_people_write_them() -> None:
    assert [scales.short_duration(v) for v in (0, 4, 90, 3600, 5400, 6 * 3600, 90000)] == [
        "0s",
        "4s",
        "1m 30s",
        "1h",
        "1h 30m",
        "6h",
        "1d 1h",
    ]
    assert scales.short_bytes(1536) == "1.5 KiB" and scales.short_bytes(700 * 2**20) == "700 MiB"
    assert scales.short_count(2_500_000) == "2,500,000"


# --- time charts --------------------------------------------------------------------------


def sawtooth() -> list[tuple[float, float]]:
    return [(T0, 60), (T0 + 3600, 3660), (T0 + 3600, 30), (T0 + 7200, 3630)]


def test_a_time_chart_draws_each_series_and_the_target_where_they_belong() -> None:
    root = parse(
        time_chart(
            "chart-rpo",
            "RPO",
            [Series("primary", sawtooth()), Series("second", [(T0, 10), (T0 + 7200, 20)])],
            target=6 * 3600,
            end=T0 + 7200,
        )
    )
    assert root.get("id") == "chart-rpo" and root.get("viewBox") == f"0 0 {WIDTH} 254"
    lines = find(root, "polyline", "series")
    assert [line.get("data-series") for line in lines] == ["primary", "second"]
    first = points(lines[0])
    assert len(first) == 4
    assert first[0][0] == pytest.approx(MARGIN_LEFT) and first[-1][0] == pytest.approx(WIDTH - 20)
    assert first[1][0] == first[2][0] and first[1][1] < first[2][1]  # the drop at a backup
    assert all(TOP <= y <= BOTTOM for _, y in first)
    (target,) = find(root, "line", "target")
    scale = duration_scale([y for _, y in sawtooth()] + [10, 20], 6 * 3600)
    assert float(target.get("y1")) == pytest.approx(scale.pixel(6 * 3600, TOP, BOTTOM), abs=0.1)
    assert "max RPO 6h" not in texts(root)  # default label says "target"
    assert any(t.startswith("target 6h") for t in texts(root, "target-label"))
    assert sorted(texts(root, "legend")) == ["primary", "second"]
    assert "log scale" not in texts(root, "note")  # an hour against 6h: linear


def test_an_empty_time_chart_says_so() -> None:
    root = parse(time_chart("chart-rpo", "RPO", [], target=3600, empty="no snapshot"))
    assert texts(root, "empty") == ["no snapshot"]
    assert not find(root, "polyline", "series") and not find(root, "line", "target")


# --- category charts ------------------------------------------------------------------------


def test_bars_are_as_tall_as_their_values_and_zero_still_shows() -> None:
    bars = [Bar("a", 100.0), Bar("b", 200.0), Bar("c", 0.0), Bar("d", None)]
    root = parse(category_chart("c", "bytes", ["a", "b", "c", "d"], [Panel("bytes", bars=bars)]))
    rects = find(root, "rect", "bar")
    assert len(rects) == 3
    heights = [float(r.get("height")) for r in rects]
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.01)
    assert heights[2] == 1.0  # a hairline, not nothing
    assert all(float(r.get("y")) + float(r.get("height")) == pytest.approx(BOTTOM) for r in rects)
    assert "n/a" in texts(root, "note")
    assert [r.get("data-value") for r in rects] == ["100", "200", "0"]


def test_rto_bars_against_a_target_on_a_log_scale() -> None:
    bars = [
        Bar("#1", 4.0, charts.PASSED, css="passed"),
        Bar("#2", 7.5, charts.FAILED, css="failed", note="*"),
    ]
    panel = Panel("duration", bars=bars, target=4 * 3600, target_label="max RTO")
    root = parse(category_chart("chart-rto", "RTO", ["#1", "#2"], [panel]))
    assert len(find(root, "rect", "failed")) == 1 and len(find(root, "rect", "passed")) == 1
    assert all(float(r.get("height")) > 20 for r in find(root, "rect", "bar"))  # visible
    assert "8s*" in texts(root, "bar-note")  # the value, marked as projected
    (target,) = find(root, "line", "target")
    assert TOP <= float(target.get("y1")) < BOTTOM


def test_panels_share_the_slots_and_labels_are_thinned() -> None:
    n = 100
    labels = [f"s{i}" for i in range(n)]
    size = Series("archive size", [(i, 1000.0 + i) for i in range(n)])
    added = [Bar(f"s{i}", float(i)) for i in range(n)]
    root = parse(
        category_chart(
            "chart-size",
            "size",
            labels,
            [Panel("bytes", lines=[size], label="archive size"), Panel("bytes", bars=added)],
        )
    )
    (line,) = find(root, "polyline", "series")
    rects = find(root, "rect", "bar")
    xs = [x for x, _ in points(line)]
    centers = [float(r.get("x")) + float(r.get("width")) / 2 for r in rects]
    assert xs == pytest.approx(centers, abs=0.11)  # the same slot for the same snapshot
    assert max(y for _, y in points(line)) <= BOTTOM  # the line stays in the first panel
    assert min(float(r.get("y")) for r in rects) > BOTTOM  # the bars in the second
    slot_labels = [t for t in texts(root, "tick") if t.startswith("s")]
    assert 5 <= len(slot_labels) <= 13
    assert not find(root, "circle", "point") or len(find(root, "circle", "point")) == n


def test_names_are_escaped_and_nothing_external_is_referenced() -> None:
    evil = '<script>alert("x")</script>'
    markup = str(
        category_chart(
            'id"><x',
            evil,
            [evil],
            [Panel("count", lines=[Series(evil, [(0, 1.0)])], bars=[Bar(evil, 1.0, title=evil)])],
            legend=[(evil, "#000")],
        )
    )
    root = parse(markup)  # still well-formed
    assert "<script" not in markup and "href" not in markup and "url(" not in markup
    assert evil in texts(root, "legend")
