"""``drctl status --fleet``: every site of a shared PostgreSQL catalog, one line each,
worst first, judged from the catalog alone (targets as each site's drills recorded them).
Rows are written as the sites' controllers would; the last test runs the real CLI."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from drctl import config as config_mod
from drctl.actions.context import Context
from drctl.actions.status_fleet import fleet_status
from drctl.catalog.db import Catalog
from drctl.cli.cmd_status import render_fleet
from tests.support.catalog_rows import SiteRows
from tests.support.drctl_env import make_env
from tests.support.postgres import pg_url


def populate(catalog: Catalog, now: datetime) -> None:
    def ago(**delta) -> datetime:
        return now - timedelta(**delta)

    alpha = SiteRows(catalog, "alpha")  # healthy
    alpha.backup(ago(hours=2))
    alpha.drill(ago(hours=1), targets=(6 * 3600, 4 * 3600))

    bravo = SiteRows(catalog, "bravo-radiology-campus-east")  # RPO and drill breached
    bravo.backup(ago(hours=30))
    bravo.backup(ago(hours=2), state="failed", reason="repository unreachable")
    bravo.drill(ago(hours=20), verdict="failed", findings=[("study_missing", None, "1 study")])

    charlie = SiteRows(catalog, "charlie")  # vanished studies only: a problem, no breach
    charlie.backup(ago(hours=1), node="pacs", state="warning", reason="1 vanished study")
    charlie.drill(ago(minutes=30), node="pacs")
    charlie.vanished(["1.2.3.4"], node="pacs")

    delta = SiteRows(catalog, "delta")  # a longer RPO than alpha, within its own target
    delta.backup(ago(hours=10))
    delta.drill(ago(hours=9), targets=(24 * 3600, 8 * 3600))


@pytest.fixture
def catalog(pg_database):
    catalog = Catalog.open(pg_url(pg_database))
    yield catalog
    catalog.close()


def test_worst_site_first_and_each_judged_by_its_own_targets(catalog, tmp_path) -> None:
    now = datetime.now(UTC)
    populate(catalog, now)
    settings = config_mod.from_mapping(
        {"controller": {"site": "alpha", "data_dir": str(tmp_path)}, "drill": {"max_rpo": "6h"}}
    )
    fleet = fleet_status(Context(settings=settings, catalog=catalog), now=now)
    doc = fleet.to_json()
    order = [s["site"] for s in doc["sites"]]
    assert order == ["bravo-radiology-campus-east", "charlie", "delta", "alpha"]
    assert fleet.ok is False
    bravo, charlie, delta, alpha = doc["sites"]
    assert bravo["breaches"] == 3 and bravo["rpo_breach"] is True
    assert {p["kind"] for p in bravo["problems"]} >= {"backup_failed", "rpo_breach", "drill_failed"}
    assert bravo["last_backup"]["state"] == "failed"
    assert charlie["breaches"] == 0 and charlie["nodes"] == ["pacs"]
    assert {p["kind"] for p in charlie["problems"]} == {"backup_warning", "vanished_unacknowledged"}
    assert delta["ok"] and delta["targets"]["max_rpo_s"] == 24 * 3600  # its drill's target
    assert alpha["ok"] and alpha["worst"] is None

    out = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    render_fleet(out, doc)
    lines = out.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    assert "2 with problems" in lines[0]
    assert lines[2].startswith("bravo") and "BREACH" in lines[2]
    assert any(line.startswith("BREACH") and "bravo" in line for line in lines)


def test_the_real_cli_reads_the_shared_catalog(pg_database, tmp_path) -> None:
    catalog = Catalog.open(pg_url(pg_database))
    try:
        populate(catalog, datetime.now(UTC))
    finally:
        catalog.close()
    env = make_env(
        tmp_path / "drctl",
        repositories={"offsite": {"url": str(tmp_path / "repo")}},
        controller={"site": "alpha", "catalog": pg_url(pg_database, "postgresql")},
    )
    doc = env.cli_json("status", "--fleet", expect=1)
    assert [s["site"] for s in doc["sites"]][0] == "bravo-radiology-campus-east"
    assert "postgresql" in doc["catalog"] and "***" not in doc["catalog"]
