"""Drill reports as one self-contained HTML page (no external resources: it must open from
an e-mail attachment or an auditor's USB stick) and as JSON files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from drctl.reports.model import HIPAA, DrillReport

TEMPLATE = "drill.html.j2"


def environment() -> jinja2.Environment:
    """The reports' template environment: autoescaped, strict, with the ``duration`` and
    ``when`` filters (shared by the drill and site reports)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drctl.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_seconds
    env.filters["when"] = format_time
    return env


def format_seconds(value: float | None) -> str:
    """Seconds -> ``"2h 05m"``, ``"3m 07s"``, ``"12.4s"``; ``"-"`` for None."""
    if value is None:
        return "-"
    value = float(value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def format_time(value: str | None) -> str:
    """An ISO time -> ``"2024-05-01 10:15:00 UTC"``."""
    if not value:
        return "-"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_html(report: DrillReport) -> str:
    """The report page; the verdict is the first element of the body."""
    template = environment().get_template(TEMPLATE)
    return template.render(
        r=report, hipaa=HIPAA, generated=datetime.now(UTC).isoformat(timespec="seconds")
    )


def render_json(report: DrillReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=False, default=str) + "\n"


def default_paths(folder: Path, report: DrillReport) -> tuple[Path, Path]:
    """(html, json) paths for ``report`` in ``folder``: drill-<id>-<node>-<time>.*"""
    stamp = datetime.fromisoformat(report.started_at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = f"drill-{report.drill_id}-{report.node}-{stamp}"
    return folder / f"{stem}.html", folder / f"{stem}.json"


def paths_for(requested: Path) -> tuple[Path, Path]:
    """(html, json) for ``--report PATH``: PATH is the HTML page (or, ending in .json, the
    JSON file) and the other one sits beside it."""
    if requested.suffix.lower() == ".json":
        return requested.with_suffix(".html"), requested
    return requested, requested.with_suffix(".json")


def write_files(report: DrillReport, html_path: Path, json_path: Path) -> tuple[str, str]:
    """Write both files (atomically, mode 0640) and return their contents (html, json)."""
    html_text, json_text = render_html(report), render_json(report)
    for path, text in ((html_path, html_text), (json_path, json_text)):
        write_atomic(path, text)
    return html_text, json_text


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0640) through a temporary file and a rename, so a
    reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
