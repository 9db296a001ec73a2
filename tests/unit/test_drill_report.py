"""Drill reports: cli.md's JSON shape, a self-contained HTML page with the verdict first,
HIPAA sections, escaping, and UID redaction."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drctl.reports import html
from drctl.reports.model import HIPAA, REDACTED, DrillReport, redacted
from tests.support.drills import DRILL_JSON_KEYS

STUDY = "1.2.826.0.1.3680043.8.498.12345"
SOP = "1.2.826.0.1.3680043.8.498.12345.7.1"


def report(**overrides) -> DrillReport:
    base = dict(
        drill_id=7,
        run_id=70,
        site="main",
        node="pacs1",
        repository="offsite",
        snapshot_id="ab" * 32,
        snapshot_time="2024-05-01T02:00:00+00:00",
        pair_time="2024-05-01T01:59:00+00:00",
        snapshot_status="complete",
        standby="sandbox",
        target={"aet": "DRCTL_SANDBOX"},
        scope="full",
        scope_reason="--full given",
        verdict="failed",
        started_at="2024-05-01T03:00:00+00:00",
        ended_at="2024-05-01T03:10:00+00:00",
        studies_expected=3,
        studies_verified=2,
        studies_restored=3,
        instances_sampled=5,
        rto_s=600.0,
        rto_projected=False,
        rto_measured_s=600.0,
        max_rto=14400.0,
        rpo_s=60.0,
        rpo_basis="primary",
        max_rpo=21600.0,
        phases={
            "check": {"duration_s": 1.0, "ok": True},
            "restore": {"duration_s": 5.0, "ok": True},
        },
        layers={"index": {"checked": 3, "findings": 0, "duration_s": 0.2, "notes": []}},
        findings=[
            {
                "kind": "instance_corrupt",
                "study_uid": STUDY,
                "layer": "served",
                "detail": f"1 of 2 instances: {SOP} (served content differs) <script>",
            },
            {
                "kind": "extra_study",
                "study_uid": "1.2.3.4.5",
                "layer": "index",
                "detail": "not in the manifest",
            },
        ],
        tools={"drctl": "0.1.0", "restic": "restic 0.14.0"},
        seed=1,
        reason="1 finding(s)",
    )
    base.update(overrides)
    return DrillReport(**base)


def test_json_starts_with_the_cli_shape() -> None:
    doc = report().to_json()
    assert tuple(doc)[: len(DRILL_JSON_KEYS)] == DRILL_JSON_KEYS
    assert doc["state"] == "failed"
    assert doc["findings"][0]["study_uid"] == STUDY
    json.dumps(doc)  # serialisable as is


class Body(HTMLParser):
    """The body's first element and whether anything loads from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.in_body = False
        self.first: tuple | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "body":
            self.in_body = True
        elif self.in_body and self.first is None:
            self.first = (tag, attrs.get("id"), attrs.get("class"))
        for key in ("src", "href"):
            if attrs.get(key):
                self.external.append(attrs[key])
        if tag == "link":
            self.external.append(str(attrs))


@pytest.mark.parametrize("verdict", ["passed", "failed"])
def test_html_puts_the_verdict_first_and_is_self_contained(verdict: str) -> None:
    page = html.render_html(
        report(verdict=verdict, findings=[] if verdict == "passed" else report().findings)
    )
    parser = Body()
    parser.feed(page)
    assert parser.first == ("header", "verdict", verdict)
    assert parser.external == []
    assert f"Restore drill {verdict.upper()}" in page
    for section in HIPAA.values():
        assert section.split(":")[0] in page


def test_html_escapes_what_it_shows_and_names_studies_with_findings() -> None:
    page = html.render_html(report())
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert STUDY in page and "instance_corrupt" in page


def test_redaction_removes_every_uid_from_json_and_html(tmp_path: Path) -> None:
    hidden = redacted(report(notes=[f"study {STUDY} looked odd"]))
    html_text, json_text = html.write_files(hidden, tmp_path / "r.html", tmp_path / "r.json")
    for text in (html_text, json_text):
        assert STUDY not in text and SOP not in text and "1.2.3.4.5" not in text
        assert REDACTED in text
    assert json.loads(json_text)["redacted"] is True
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("1 of 4 instances: 2.25.344863593266052759364743726927197207410 (MD5 differs)", "1 of 4"),
        ("class 1.2.840.10008.5.1.4.1.1.7 refused.", "refused."),
        ("study 1.2.3.4.5, then", "then"),
    ],
)
def test_redaction_catches_every_uid_form(text: str, kept: str) -> None:
    from drctl.reports.model import UID_PATTERN, redact_text

    hidden = redact_text(text)
    assert not UID_PATTERN.search(hidden) and REDACTED in hidden and kept in hidden


def test_redaction_leaves_addresses_versions_and_durations() -> None:
    from drctl.reports.model import redact_text

    text = "SANDBOX@dicom://127.0.0.1:4242 answered (Orthanc 1.10.1) in 0.334s"
    assert redact_text(text) == text


def test_partial_reports_say_the_rto_is_projected() -> None:
    page = html.render_html(
        report(
            rto_projected=True,
            scope="partial",
            rto_s=9000.0,
            rto_measured_s=60.0,
            verdict="passed",
            findings=[],
            phases={"restore": {"duration_s": 5.0, "ok": True, "throughput_bps": 2**20}},
        )
    )
    assert "projected to the whole archive" in page
    assert "1.0 MiB/s" in page
    assert "verified at index level only" in page


def test_report_paths() -> None:
    r = report()
    assert html.paths_for(Path("/x/drill.json")) == (Path("/x/drill.html"), Path("/x/drill.json"))
    assert html.paths_for(Path("/x/drill.html")) == (Path("/x/drill.html"), Path("/x/drill.json"))
    page, doc = html.default_paths(Path("/reports"), r)
    assert page.name == "drill-7-pacs1-20240501T030000Z.html" and doc.suffix == ".json"


def test_durations_read_like_a_person_writes_them() -> None:
    assert html.format_seconds(None) == "-"
    assert html.format_seconds(12.34) == "12.3s"
    assert html.format_seconds(187) == "3m 07s"
    assert html.format_seconds(3 * 3600 + 300) == "3h 05m"
    assert html.format_seconds(2 * 86400 + 3600) == "2d 01h"
