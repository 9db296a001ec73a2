"""The site report's record and page from catalog rows: the RPO sawtooth, the HIPAA
evidence table, what is redacted, a page with nothing external, and ``--since``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drctl.actions.context import Context
from drctl.actions.report import build_report, write_report
from drctl.actions.status import site_status
from drctl.catalog.db import Catalog
from drctl.cli.cmd_report import parse_since
from drctl.errors import UsageError
from drctl.reports import site, site_html
from tests.support.catalog_rows import NOW, SiteRows, ago
from tests.unit.test_status_site import UID, settings

INSTANCE = "2.25.273074559819534360449806012768379554625"  # a UUID-derived UID


def snap(time: datetime, pair_s: float = 10, status: str = "complete", node: str = "p") -> dict:
    return {
        "node": node,
        "time": time.isoformat(),
        "pair_time": (time - timedelta(seconds=pair_s)).isoformat(),
        "status": status,
    }


def test_rpo_is_a_sawtooth_that_drops_at_each_restorable_snapshot() -> None:
    t = NOW - timedelta(hours=3)
    snaps = [
        snap(t),
        snap(t + timedelta(hours=1), status="suspect"),  # not restorable: no drop
        snap(t + timedelta(hours=2), pair_s=60),
    ]
    points = site.rpo_history(snaps, "p", None, NOW)
    values = [(datetime.fromisoformat(at), v) for at, v in points]
    assert values == [
        (t, 10),
        (t + timedelta(hours=2), 2 * 3600 + 10),  # just before the second good snapshot
        (t + timedelta(hours=2), 60),
        (NOW, 3600 + 60),
    ]
    # from a later start: the first point is the RPO at that moment, from the older snapshot
    since = t + timedelta(minutes=30)
    later = site.rpo_history(snaps, "p", since, NOW)
    assert later[0] == [since.isoformat(), 1800 + 10]
    assert site.rpo_history(snaps, "other", None, NOW) == []


@pytest.fixture
def ctx(tmp_path: Path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    s = settings(tmp_path).model_copy(
        update={"reports": settings(tmp_path).reports.model_copy(update={"dir": tmp_path / "out"})}
    )
    yield Context(settings=s, catalog=catalog)
    catalog.close()


def history(catalog: Catalog) -> None:
    rows = SiteRows(catalog, "north")
    for days in (5, 4, 3, 2, 1):
        rows.backup(ago(days=days), studies=100 + days)
    rows.backup(ago(hours=12), state="warning", reason=f"1 vanished study not acknowledged: {UID}")
    rows.drill(ago(days=4))
    rows.drill(
        ago(days=2),
        verdict="failed",
        findings=[("instance_corrupt", UID, f"instance {INSTANCE} of {UID}: digest differs")],
    )
    rows.drill(ago(hours=6))
    rows.run("check", "succeeded", ago(days=3), node=None)
    rows.run("check", "failed", ago(hours=2), node=None, reason="pack 1a2b damaged")


def report_of(ctx: Context, since: datetime | None = None) -> site.SiteReport:
    return build_report(ctx, site_status(ctx, now=NOW), since=since)


def test_the_record_holds_the_history_and_the_evidence(ctx) -> None:
    history(ctx.catalog)
    doc = report_of(ctx).to_json()
    assert doc["verdict"]["ok"] is False
    assert {p["kind"] for p in doc["verdict"]["problems"]} >= {"check_failed", "backup_warning"}
    assert [d["state"] for d in doc["drills"]] == ["passed", "failed", "passed"]
    assert len(doc["snapshots"]) == 6 and len(doc["rpo"]["primary"]) == 12
    assert doc["summary"]["backups"] == {"succeeded": 5, "warning": 1}
    assert [c["state"] for c in doc["checks"]] == ["failed", "succeeded"]
    evidence = {row["requirement"][-3:]: row for row in doc["hipaa"]}
    assert list(evidence) == ["(A)", "(B)", "(C)", "(D)", "(E)"]
    assert evidence["(A)"]["status"] == "evidenced" and evidence["(A)"]["runs_total"] == 8
    assert evidence["(C)"]["status"] == "no evidence" and evidence["(C)"]["runs"] == []
    assert evidence["(D)"]["runs_by_state"] == {"succeeded": 3, "failed": 2}
    assert len(evidence["(A)"]["runs"]) == site.RUNS_SHOWN
    assert "RPO 6h 00m, RTO 4h 00m" in evidence["(E)"]["evidence"]


def test_uids_only_in_findings_and_none_when_redacted(ctx) -> None:
    history(ctx.catalog)
    report = report_of(ctx)
    failed = next(d for d in report.drills if d["state"] == "failed")
    assert failed["findings"][0]["study_uid"] == UID
    page = site_html.render(report)
    assert page.count(UID) == 2  # the finding's study and its detail, nothing else
    assert page.count(INSTANCE) == 1
    assert UID not in str([report.backups, report.verdict, report.checks])

    redact = ctx.settings.model_copy(
        update={"reports": ctx.settings.reports.model_copy(update={"redact_uids": True})}
    )
    hidden = report_of(Context(settings=redact, catalog=ctx.catalog))
    for text in (site_html.render(hidden), str(hidden.to_json())):
        assert UID not in text and INSTANCE not in text
    assert hidden.drills[1]["findings"][0]["study_uid"] == "[UID redacted]"


class Page(HTMLParser):
    """Tags, the resources they would load, and the first element of the body."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.loads: list[str] = []
        self.body_first: tuple[str, dict] | None = None
        self._in_body = False
        self.style = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.loads += [f"{tag} {k}" for k in ("src", "href") if k in attrs]
        if self._in_body and self.body_first is None:
            self.body_first = (tag, attrs)
        self._in_body = self._in_body or tag == "body"

    def handle_data(self, data):
        if self.tags and self.tags[-1] == "style":
            self.style += data


def test_the_page_is_self_contained_verdict_first_and_printable(ctx) -> None:
    history(ctx.catalog)
    path = write_report(ctx, report_of(ctx))
    assert path.parent == ctx.settings.reports.dir and path.name.startswith("site-north-")
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    page = Page()
    page.feed(path.read_text())
    assert page.loads == [] and not {"script", "link", "img", "iframe"} & set(page.tags)
    assert "url(" not in page.style and "@import" not in page.style
    assert "@media print" in page.style and "@page" in page.style
    tag, attrs = page.body_first
    assert (tag, attrs["id"], attrs["data-ok"]) == ("header", "verdict", "false")
    assert page.tags.count("svg") == 4


def test_since_limits_the_period(ctx) -> None:
    history(ctx.catalog)
    report = report_of(ctx, since=ago(days=2, hours=12))
    assert [d["state"] for d in report.drills] == ["passed", "failed"]
    assert len(report.snapshots) == 3
    assert report.rpo["primary"][0][0] == ago(days=2, hours=12).isoformat()
    empty = report_of(ctx, since=ago(minutes=1))
    assert empty.drills == [] and empty.snapshots == []
    assert "No drill in this period" in site_html.render(empty)


def test_since_accepts_dates_times_and_durations() -> None:
    now = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert parse_since(None, now) is None
    assert parse_since("2024-05-01", now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00+02:00", now) == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert parse_since("30d", now) == now - timedelta(days=30)
    for bad in ("next tuesday", "2024-07-01"):
        with pytest.raises(UsageError):
            parse_since(bad, now)
