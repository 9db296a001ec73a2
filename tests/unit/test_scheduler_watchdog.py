"""The watchdog's clocks and alert episodes, job alert episodes, and the metrics page, on a
SQLite catalog filled with the rows actions write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest

from drctl import config
from drctl.catalog.db import Catalog
from drctl.catalog.models import Alarm, Replication, Run, Snapshot
from drctl.scheduler.alerting import episode_alert, specific_alerts
from drctl.scheduler.jobs import JobSpec
from drctl.scheduler.metrics import Metrics
from drctl.scheduler.watchdog import Watchdog, read_clocks
from drctl.scheduler.work import Outcome

NOW = datetime.now(UTC).replace(microsecond=0)


class Collected:
    def __init__(self):
        self.alerts = []

    def alert(self, alert):
        self.alerts.append(alert)


@pytest.fixture
def env(tmp_path):
    node = {"aet": "X", "storage": "/srv/x", "index": "postgresql://o@db/o", "index_copy": "online"}
    settings = config.from_mapping(
        {
            "controller": {"site": "main"},
            "repository": {"offsite": {"url": "/srv/repo", "password": "env:P"}},
            "node": {
                "pacs1": {**node, "agent": "pacs1"},
                "dr": {
                    **node,
                    "role": "standby",
                    "agent": "dr",
                    "primary": "pacs1",
                    "replication": "dump",
                },
            },
            "schedule": {"backup": "every:4h", "replicate": "every:15m"},
            "drill": {"max_rpo": "6h"},
        }
    )
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield settings, catalog
    catalog.close()


def run_row(kind: str, node: str, state: str = "succeeded", **kw) -> Run:
    return Run(
        kind=kind,
        site="main",
        node=node,
        state=state,
        started_at=NOW - timedelta(hours=9),
        ended_at=NOW - timedelta(hours=9),
        heartbeat_at=NOW,
        host="h",
        pid=1,
        trigger="scheduler",
        details={},
        **kw,
    )


def add_snapshot(catalog, hours_old: float, status: str = "complete", seq: int = 1) -> None:
    t = NOW - timedelta(hours=hours_old)
    with catalog.session() as s:
        s.add(
            Snapshot(
                repository="offsite",
                snapshot_id=f"snap{seq}" * 8,
                short_id=f"s{seq}",
                site="main",
                node="pacs1",
                seq=seq,
                time=t,
                pair_time=t - timedelta(minutes=1),
                status=status,
                bytes_added=1234,
            )
        )


def add_replication(catalog, minutes_old: float) -> None:
    t = NOW - timedelta(minutes=minutes_old)
    with catalog.session() as s:
        s.add(
            Replication(
                site="main",
                standby="dr",
                source="pacs1",
                mode="dump",
                finished_at=t,
                source_time=t,
                lag_s=0.0,
            )
        )


def test_a_fresh_standby_index_never_masks_a_dead_backup(env):
    settings, catalog = env
    add_snapshot(catalog, hours_old=9)
    add_snapshot(catalog, hours_old=1, status="suspect", seq=2)  # not restorable: ignored
    add_replication(catalog, minutes_old=5)
    clocks = {c.clock: c for c in read_clocks(catalog, settings, now=NOW, started=NOW)}
    assert clocks["image"].breach and clocks["image"].age_s == pytest.approx(9 * 3600 + 60)
    assert not clocks["index"].breach and clocks["index"].age_s == pytest.approx(300)


def test_nodes_that_never_had_data_count_from_their_first_run(env):
    settings, catalog = env
    with catalog.session() as s:
        s.add(run_row("backup", "pacs1", state="failed"))
    clocks = {
        c.clock: c
        for c in read_clocks(catalog, settings, now=NOW, started=NOW - timedelta(minutes=1))
    }
    assert clocks["image"].breach and "no complete snapshot" in clocks["image"].detail
    assert not clocks["index"].breach  # no replicate run yet: counts from the daemon start


def test_one_alert_per_breach_episode_across_daemons(env):
    settings, catalog = env
    add_snapshot(catalog, hours_old=9)
    add_replication(catalog, minutes_old=5)
    sink = Collected()
    dogs = [
        Watchdog(catalog, lambda: settings, sink, Metrics("main", agent), agent)
        for agent in ("pacs1", "dr")
    ]
    for _ in range(3):
        for dog in dogs:
            dog.tick(NOW)
    assert [a.kind for a in sink.alerts] == ["rpo_breach"]
    assert sink.alerts[0].node == "pacs1" and "image RPO" in sink.alerts[0].summary
    add_snapshot(catalog, hours_old=0.5, seq=3)
    for dog in dogs:
        dog.tick(NOW)
    assert [a.kind for a in sink.alerts] == ["rpo_breach", "rpo_recovered"]


def test_metrics_page_shows_clocks_jobs_and_data(env):
    settings, catalog = env
    add_snapshot(catalog, hours_old=9)
    add_replication(catalog, minutes_old=5)
    with catalog.session() as s:
        s.add(run_row("backup", "pacs1", state="failed", reason="repository unreachable"))
    metrics = Metrics("main", "pacs1")
    Watchdog(catalog, lambda: settings, Collected(), metrics, "pacs1").tick(NOW)
    page = generate_latest(metrics.registry).decode()
    assert 'drctl_rpo_breach{clock="image",node="pacs1",site="main"} 1.0' in page
    assert 'drctl_rpo_seconds{clock="index",node="dr",site="main"} 300.0' in page
    assert (
        'drctl_job_last_run_failed{agent="pacs1",job="backup",site="main",target="pacs1"} 1.0'
    ) in page
    assert 'drctl_snapshots{node="pacs1",repository="offsite",site="main"} 1.0' in page
    assert 'drctl_snapshot_last_bytes_added{node="pacs1",site="main"} 1234.0' in page
    assert 'drctl_replication_lag_seconds{site="main",standby="dr"} 0.0' in page
    assert 'drctl_daemon_leader{agent="pacs1",site="main"} 0.0' in page


def test_job_alerts_once_per_episode_and_recovery(env):
    _, catalog = env
    spec = JobSpec("check", "offsite", "pacs1", "every:1h")

    def kinds(*states: str) -> list:
        out = []
        for state in states:
            found = episode_alert(catalog, "main", spec, Outcome(state, "why"), quiet=False)
            out.append(found.kind if found else None)
        return out

    assert kinds("failed", "failed", "interrupted", "failed") == ["run_failed", None, None, None]
    assert kinds("succeeded", "succeeded") == ["run_recovered", None]
    assert kinds("warning", "warning", "failed", "failed") == [
        "run_warning",
        None,
        "run_failed",
        None,
    ]


def test_specific_alerts_for_breakers_vanished_studies_and_drills(env):
    _, catalog = env
    with catalog.session() as s:
        run = run_row("backup", "pacs1", state="failed")
        s.add(run)
        s.flush()
        s.add(
            Alarm(
                site="main",
                node="pacs1",
                kind="mass_deletion",
                detail="40% vanished",
                run_id=run.id,
                opened_at=NOW,
            )
        )
        run_id = run.id
    spec = JobSpec("backup", "pacs1", "pacs1", "every:4h")
    found = specific_alerts(
        catalog, "main", spec, Outcome("failed", "breaker", run_id, vanished=["1.2.3"])
    )
    assert [a.kind for a in found] == ["circuit_breaker", "vanished_studies"]
    assert found[1].study_uids == ("1.2.3",) and found[0].reason == "40% vanished"
    drill = specific_alerts(
        catalog,
        "main",
        JobSpec("drill", "pacs1", "dr", "every:7d"),
        Outcome("failed", "2 studies missing", drill={"verdict": "failed", "drill_id": 3}),
    )
    assert [a.kind for a in drill] == ["drill_failed"] and drill[0].reason == "2 studies missing"
    aborted = specific_alerts(
        catalog,
        "main",
        JobSpec("drill", "pacs1", "dr", "every:7d"),
        Outcome("failed", "repository offsite unreachable"),
    )
    assert [a.kind for a in aborted] == ["drill_failed"] and "could not run" in aborted[0].summary
