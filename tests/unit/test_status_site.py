"""``drctl status`` of one site from catalog rows: what counts as a problem, breaches of a
target first, and the screen an admin sees at 80 columns (rendered by a rich Console of
width 80, as the CLI does on a terminal of that size)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from drctl import config as config_mod
from drctl.actions.context import Context
from drctl.actions.status import site_status
from drctl.catalog.db import Catalog
from drctl.cli.cmd_status import render_site
from tests.support.catalog_rows import NOW, SiteRows, ago

UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"


def settings(tmp_path: Path, node: str = "primary", **drill) -> config_mod.Settings:
    return config_mod.from_mapping(
        {
            "controller": {"site": "north", "data_dir": str(tmp_path / "state")},
            "repository": {"offsite": {"url": str(tmp_path / "repo"), "password": "env:NOPE"}},
            "node": {
                node: {
                    "aet": "PACS",
                    "storage": str(tmp_path / "storage"),
                    "index": "postgresql://pacs@127.0.0.1/orthanc",
                    "repository": "offsite",
                }
            },
            "drill": {"max_rpo": "6h", "max_rto": "4h", **drill},
        }
    )


@pytest.fixture
def ctx(tmp_path: Path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield Context(settings=settings(tmp_path), catalog=catalog)
    catalog.close()


def rendered(doc: dict, width: int = 80) -> list[str]:
    out = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    render_site(out, doc)
    return out.export_text().splitlines()


def healthy(rows: SiteRows, node: str = "primary") -> None:
    rows.backup(ago(hours=26), node=node, studies=90)
    rows.backup(ago(hours=2), node=node)
    rows.drill(ago(hours=1), node=node)
    rows.run("check", "succeeded", ago(hours=3), node=None)


def test_a_healthy_site_is_ok_and_says_so_first(ctx) -> None:
    healthy(SiteRows(ctx.catalog, "north"))
    st = site_status(ctx, now=NOW)
    assert st.ok and st.problems == []
    doc = st.to_json()
    (node,) = doc["nodes"]
    assert node["backup"]["state"] == "succeeded" and node["snapshot"]["studies"] == 100
    assert 2 * 3600 - 60 < node["rpo"]["image_s"] < 2 * 3600
    assert node["rpo"]["breach"] is False
    assert node["drill"]["state"] == "passed" and node["drill"]["rto_s"] == 1800
    assert doc["repositories"][0]["check"]["state"] == "succeeded"
    lines = rendered(doc)
    assert lines[1].startswith("OK")
    assert max(map(len, lines)) <= 80


def test_breaches_come_first_then_other_problems(ctx) -> None:
    rows = SiteRows(ctx.catalog, "north")
    rows.backup(ago(hours=9))  # the newest restorable snapshot: RPO 9h > 6h
    rows.backup(ago(hours=1), state="failed", reason="restic: repository unreachable")
    rows.drill(
        ago(hours=3),
        verdict="failed",
        rto_s=5 * 3600,
        findings=[("instance_missing", UID, "2 instances missing")],
    )
    rows.alarm(ago(days=2))
    rows.vanished(["1.2.3.4.5", "1.2.3.4.6"])
    rows.vanished(["1.2.3.4.7"], acked=True)
    rows.run("restore", "failed", ago(minutes=30), reason="node unreachable")
    rows.run("check", "failed", ago(hours=4), node=None, reason="pack 1a2b damaged")

    st = site_status(ctx, now=NOW)
    kinds = [(p.severity, p.kind) for p in st.problems]
    breaches = {k for s, k in kinds if s == "breach"}
    assert breaches == {
        "backup_failed",
        "rpo_breach",
        "drill_failed",
        "rto_exceeded",
        "alarm_open",
        "check_failed",
    }
    assert {k for s, k in kinds if s == "problem"} == {"vanished_unacknowledged", "run_failed"}
    severities = [s for s, _ in kinds]
    assert severities == sorted(severities)  # every breach before every other problem
    vanished = next(p for p in st.problems if p.kind == "vanished_unacknowledged")
    assert vanished.message.startswith("2 vanished studies")  # the acknowledged one is not counted

    lines = rendered(st.to_json())
    assert max(map(len, lines)) <= 80
    assert "6 targets breached, 2 other problems" in lines[1]
    assert lines[2].startswith("BREACH") and "backup" in lines[2]


def test_long_names_and_reasons_still_fit_80_columns(tmp_path: Path) -> None:
    node = "radiology-primary-archive-building-b-01"
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    ctx = Context(settings=settings(tmp_path, node), catalog=catalog)
    try:
        rows = SiteRows(catalog, "north")
        rows.backup(ago(days=3), node=node, total=3 * 2**40, added=5 * 2**30, studies=2_500_000)
        rows.backup(ago(hours=1), node=node, state="failed", reason="x" * 400)
        rows.drill(ago(days=2), node=node, verdict="failed", rto_s=90000, projected=True)
        st = site_status(ctx, now=NOW)
    finally:
        catalog.close()
    for width in (80, 60):
        lines = rendered(st.to_json(), width)
        assert max(map(len, lines)) <= width
    assert all(len(p.message) <= 160 for p in st.problems)
    assert "BREACH" in rendered(st.to_json())[2]


def test_a_node_never_backed_up_or_drilled(ctx) -> None:
    st = site_status(ctx, now=NOW)
    kinds = [(p.severity, p.kind) for p in st.problems]
    assert kinds == [("breach", "rpo_breach"), ("problem", "never_drilled")]
    assert "never backed up" in st.problems[0].message
    lines = rendered(st.to_json())
    assert any("never" in line for line in lines)


def test_scheduled_jobs_without_a_daemon_and_next_runs(ctx) -> None:
    healthy(SiteRows(ctx.catalog, "north"))
    job = {
        "job": "backup:primary",
        "trigger": "every 1h",
        "next_run_at": "2024-06-01T13:00:00+00:00",
        "last_run": {"state": "succeeded"},
    }
    schedule = {"agents": [{"agent": "pacs1", "leader": None, "jobs": [job]}]}
    st = site_status(ctx, schedule=schedule, now=NOW)
    assert [p.kind for p in st.problems] == ["no_leader"]
    doc = st.to_json()
    assert doc["schedule"]["jobs"][0]["job"] == "backup:primary"
    text = "\n".join(rendered(doc))
    assert "Next scheduled runs" in text and "backup:primary" in text and "(no daemon)" in text


def test_catalog_only_takes_the_targets_the_site_recorded(ctx) -> None:
    rows = SiteRows(ctx.catalog, "north")
    rows.backup(ago(hours=2))
    rows.drill(ago(hours=1), targets=(3600.0, 600.0))  # this site wants RPO 1h, RTO 10m
    st = site_status(ctx, now=NOW, catalog_only=True)
    assert (st.max_rpo_s, st.max_rto_s) == (3600.0, 600.0)
    assert {p.kind for p in st.breaches} == {"rpo_breach", "rto_exceeded"}
    assert [n["node"] for n in st.nodes] == ["primary"]


def test_standbys_come_from_replicate_status(tmp_path: Path) -> None:
    from drctl.catalog.models import Replication
    from drctl.net import free_port

    port = free_port()  # nothing listens: the primary's change position is unknown
    doc = settings(tmp_path).model_dump(exclude={"source"})
    doc["node"]["primary"].update(rest=f"http://127.0.0.1:{port}", port=port)
    doc["node"]["standby"] = {
        **doc["node"]["primary"],
        "role": "standby",
        "primary": "primary",
        "index": "postgresql://pacs@127.0.0.1/standby",
        "replication": "dump",
        "start": ["true"],
        "stop": ["true"],
    }
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    ctx = Context(settings=config_mod.from_mapping(doc), catalog=catalog)
    try:
        healthy(SiteRows(catalog, "north"))
        never = site_status(ctx, now=NOW)
        assert [(p.severity, p.kind, p.node) for p in never.problems] == [
            ("problem", "replication", "standby")
        ]
        SiteRows(catalog, "north").run("replicate", "succeeded", ago(hours=8), node="standby")
        with catalog.session() as s:
            s.add(
                Replication(
                    site="north",
                    standby="standby",
                    source="primary",
                    mode="dump",
                    finished_at=ago(hours=8),
                    source_time=ago(hours=8),
                    position="5",
                )
            )
        st = site_status(ctx, now=NOW)
    finally:
        catalog.close()
    standby = next(n for n in st.nodes if n["role"] == "standby")
    assert standby["primary"] == "primary" and standby["replication"]["mode"] == "dump"
    assert standby["replication"]["rpo_s"] > 6 * 3600  # the index is 8h behind (or more)
    assert ("breach", "replication") in {(p.severity, p.kind) for p in st.problems}
    text = "\n".join(rendered(st.to_json()))
    assert "Standbys" in text and "standby  primary" in text
