"""The site report as one self-contained HTML page: inline CSS (with print rules) and
inline SVG charts, no script, no external resource, so it opens offline and prints to PDF.
The verdict is the first element of the body."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from drctl.reports import charts
from drctl.reports.charts import FAILED, PALETTE, PASSED, Bar, Panel, Series
from drctl.reports.html import environment, format_seconds, write_atomic
from drctl.reports.site import HIPAA_7, RUNS_SHOWN, SiteReport

TEMPLATE = "site_report.html.j2"
SNAPSHOTS_CHARTED = 365  # newest snapshots per node in the per-snapshot charts
FINDINGS_SHOWN = 50  # per drill; the rest are counted (drctl drill show has them all)


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _labels(times: list[str]) -> list[str]:
    """Snapshot times as short slot labels (seconds only when minutes repeat)."""
    if not times:
        return []
    moments = [datetime.fromisoformat(t).astimezone(UTC) for t in times]
    span = (moments[-1] - moments[0]).total_seconds()
    if span >= 365 * 86400:
        fmt = "%Y-%m-%d"
    elif span >= 2 * 86400:
        fmt = "%m-%d"
    else:
        fmt = "%H:%M"
    labels = [m.strftime(fmt) for m in moments]
    if fmt == "%H:%M" and len(set(labels)) < len(labels):
        labels = [m.strftime("%H:%M:%S") for m in moments]
    elif fmt == "%m-%d" and len(set(labels)) < len(labels):
        labels = [m.strftime("%m-%d %H:%M") for m in moments]
    return labels


def rpo_chart(report: SiteReport) -> Markup:
    series = [
        Series(node, [(_epoch(t), v) for t, v in points], PALETTE[i % len(PALETTE)], False)
        for i, (node, points) in enumerate(report.rpo.items())
        if points
    ]
    start = _epoch(report.since) if report.since else None
    return charts.time_chart(
        "chart-rpo",
        "Image RPO over time against the target",
        series,
        target=report.targets["max_rpo_s"],
        target_label="max RPO",
        start=start,
        end=_epoch(report.until),
        empty="no restorable snapshot in this period",
    )


def rto_chart(report: SiteReport) -> Markup:
    drills = list(reversed(report.drills))  # oldest first
    bars = []
    for d in drills:
        over = d["rto_s"] is not None and d["rto_s"] > report.targets["max_rto_s"]
        bad = d["state"] != "passed" or over
        projected = " (projected)" if d["rto_projected"] else ""
        bars.append(
            Bar(
                f"#{d['drill_id']}",
                d["rto_s"],
                FAILED if bad else PASSED,
                f"drill {d['drill_id']} {d['state']}: RTO {format_seconds(d['rto_s'])}{projected}",
                "*" if d["rto_projected"] else "",
                "failed" if bad else "passed",
            )
        )
    panel = Panel("duration", bars=bars, target=report.targets["max_rto_s"], target_label="max RTO")
    return charts.category_chart(
        "chart-rto",
        "Drill RTO per drill against the target",
        [b.label for b in bars],
        [panel],
        empty="no drill in this period",
        legend=[("passed", PASSED), ("failed or over target", FAILED)],
    )


def _node_snapshots(report: SiteReport, node: str) -> list[dict]:
    return [s for s in report.snapshots if s["node"] == node][-SNAPSHOTS_CHARTED:]


def size_chart(report: SiteReport, node: str) -> Markup:
    snaps = _node_snapshots(report, node)
    size = Series("archive size", [(i, s["bytes"]) for i, s in enumerate(snaps)], PALETTE[0])
    added = [
        Bar(
            s["short_id"],
            s["bytes_added"],
            PALETTE[3],
            f"snapshot {s['short_id']}: {s['bytes_added']} bytes added",
        )
        for s in snaps
    ]
    return charts.category_chart(
        f"chart-size-{node}",
        f"Archive size and bytes added per snapshot of {node}",
        _labels([s["time"] for s in snaps]),
        [
            Panel("bytes", lines=[size], label="archive size"),
            Panel("bytes", bars=added, label="bytes added"),
        ],
        empty=f"no snapshot of {node} in this period",
    )


def studies_chart(report: SiteReport, node: str) -> Markup:
    snaps = _node_snapshots(report, node)
    points = [(i, s["studies"]) for i, s in enumerate(snaps) if s["studies"] is not None]
    return charts.category_chart(
        f"chart-studies-{node}",
        f"Studies per snapshot of {node}",
        _labels([s["time"] for s in snaps]),
        [Panel("count", lines=[Series("studies", points, PALETTE[2])], label="studies")],
        empty=f"no snapshot of {node} in this period",
    )


def render(report: SiteReport) -> str:
    """The page (verdict first)."""
    figures = {
        "rpo": rpo_chart(report),
        "rto": rto_chart(report),
        "size": {node: size_chart(report, node) for node in report.nodes},
        "studies": {node: studies_chart(report, node) for node in report.nodes},
    }
    template = environment().get_template(TEMPLATE)
    return template.render(
        r=report,
        charts=figures,
        hipaa=HIPAA_7,
        findings_shown=FINDINGS_SHOWN,
        charted=SNAPSHOTS_CHARTED,
        runs_shown=RUNS_SHOWN,
    )


def default_name(report: SiteReport) -> str:
    stamp = datetime.fromisoformat(report.generated_at).astimezone(UTC)
    return f"site-{report.site}-{stamp.strftime('%Y%m%dT%H%M%SZ')}.html"


def write(report: SiteReport, path) -> None:
    """Write the page to ``path`` (atomically, mode 0640)."""
    write_atomic(path, render(report))
