"""``drctl replicate run`` / ``drctl replicate status`` as an admin runs them: real Orthanc
nodes on PostgreSQL indexes (dump mode), the real CLI in a subprocess.

Status is honest about the two clocks: with the primary idle the replication is current
(lag 0) but the images are as old as the last backup, and once that age passes
``drill.max_rpo`` the command exits 1 although replication is fine. A circuit breaker of
the primary pauses replication (exit 1, recorded) unless ``--force`` (audited).
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from drctl.catalog.models import Alarm, AuditEvent, Replication
from drctl.sample import SampleArchive, generate, more
from tests.support.drctl_env import DrctlEnv, make_env
from tests.support.drills import record_standby_drill
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import create_database, drop_database

RUN_KEYS = {
    "run_id",
    "standby",
    "primary",
    "mode",
    "state",
    "reason",
    "position",
    "source_time",
    "bytes",
    "duration_s",
    "outage_s",
    "lag_s",
    "lag_bytes",
    "studies",
    "skipped",
    "paused",
    "forced",
    "details",
}
STATUS_KEYS = {
    "standby",
    "primary",
    "mode",
    "ok",
    "last_success",
    "last_run",
    "position",
    "primary_position",
    "index_time",
    "index_age_s",
    "lag_s",
    "lag_bytes",
    "image_snapshot",
    "image_time",
    "image_status",
    "image_age_s",
    "rpo_s",
    "max_rpo_s",
    "index_newer_than_images",
    "problems",
    "notes",
}


@dataclasses.dataclass
class Site:
    env: DrctlEnv
    primary: ManagedNode
    standby: ManagedNode
    archive: SampleArchive


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    root = tmp_path_factory.mktemp("replicate-cli")
    archive = generate(root / "sample", studies=4, series_per_study=1, instances_per_series=2)
    databases = [create_database("drctl_orthanc"), create_database("drctl_orthanc")]
    with ThreadPoolExecutor(2) as pool:
        primary, standby = pool.map(
            lambda a: managed_node(root / a[0], a[0], postgres_db=a[1]),
            zip(("primary", "standby"), databases, strict=True),
        )
    try:
        primary.load(archive.paths)
        nodes = {
            "primary": primary.node_table(),
            "standby": standby.node_table(
                role="standby",
                primary="primary",
                start=standby.start_argv(),
                stop=standby.stop_argv(),
            ),
        }
        env = make_env(
            root / "drctl",
            repositories={"local": {"url": str(root / "repo")}},
            nodes=nodes,
            drill={"max_rpo": "1h"},
        )
        env.cli("repo", "init", check_exit=0)
        yield Site(env, primary, standby, archive)
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: n.stop(), (primary, standby)))
        for name in databases:
            for suffix in ("", "_drctl_new", "_drctl_prev"):
                drop_database(name + suffix)


def _status(site: Site, expect: int) -> dict:
    proc = site.env.cli("replicate", "status", check_exit=expect)
    [standby] = json.loads(proc.stdout)
    assert set(standby) == STATUS_KEYS
    return standby


def _replication_rows(site: Site) -> int:
    with site.env.context().catalog.session() as s:
        return len(s.scalars(select(Replication)).all())


def test_status_reports_lag_ages_and_rpo_and_breaches_on_stale_images(site: Site):
    site.env.cli("replicate", "status", check_exit=1)  # never replicated, no images
    backup = site.env.cli_json("backup", "run")
    site.primary.load(more(site.archive, 1, out_dir=site.env.root / "late").paths)
    result = site.env.cli_json("replicate", "run")
    assert set(result) == RUN_KEYS
    assert (result["state"], result["mode"]) == ("succeeded", "dump"), result
    assert result["studies"] == len(site.archive.studies) + 1 and result["lag_s"] == 0.0

    status = _status(site, expect=0)
    assert status["ok"] and status["problems"] == [], status
    assert (status["lag_s"], status["lag_bytes"]) == (0.0, None)  # the primary is idle
    # later positions on the primary are only Orthanc's Stable* markers, not content
    assert status["position"] == result["position"]
    assert status["primary_position"] >= int(status["position"])
    assert status["image_snapshot"] == backup["snapshot_id"]
    assert status["image_age_s"] > status["index_age_s"] >= 0
    assert status["rpo_s"] == pytest.approx(status["image_age_s"], abs=0.01)
    # the standby's index lists a study received after the backup: it cannot serve it
    assert status["index_newer_than_images"] is True
    assert any("index newer than images" in note for note in status["notes"])
    human = site.env.cli("replicate", "status", json_output=False, check_exit=0)
    assert "standby" in human.stdout and "dump" in human.stdout

    # backups stop: once the images are older than max_rpo, status exits 1 although the
    # replication is current
    site.env.doc["drill"] = {"max_rpo": "2s"}
    site.env.write()
    time.sleep(max(0.0, 2.5 - status["image_age_s"]))
    stale = _status(site, expect=1)
    assert stale["lag_s"] == 0.0 and stale["rpo_s"] > 2
    assert any("exceeds drill.max_rpo" in p for p in stale["problems"]), stale

    # a standby drill replaced the standby's index: status says replication is needed
    ctx = site.env.context()
    record_standby_drill(ctx, backup["snapshot_id"])
    drilled = _status(site, expect=1)
    assert any("restored a snapshot onto standby" in p for p in drilled["problems"]), drilled


def test_open_alarm_pauses_replication_unless_forced(site: Site):
    ctx = site.env.context()
    with ctx.catalog.session() as s:
        s.add(
            Alarm(
                site=ctx.site,
                node="primary",
                kind="mass_deletion",
                detail="40 of 41 studies vanished",
                opened_at=datetime.now(UTC),
            )
        )
    rows = _replication_rows(site)
    paused = site.env.cli_json("replicate", "run", expect=1)
    assert paused["state"] == "failed" and paused["paused"], paused
    assert paused["reason"].startswith("paused: circuit breaker open on primary")
    assert _replication_rows(site) == rows  # nothing reached the standby
    assert _status(site, expect=1)["last_run"]["state"] == "failed"
    human = site.env.cli("replicate", "run", json_output=False, check_exit=1)
    assert "paused: circuit breaker open on primary" in human.stdout

    forced = site.env.cli_json("replicate", "run", "--force")
    assert forced["state"] == "succeeded" and forced["forced"], forced
    assert _replication_rows(site) == rows + 1
    with ctx.catalog.session() as s:
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.command == "replicate run --force")
        ).one()
    assert event.run_id == forced["run_id"] and "open alarm" in event.target


def test_usage_errors_exit_2(site: Site):
    wrong = site.env.cli("replicate", "run", "--node", "primary", check_exit=2)
    assert "is a primary" in wrong.stderr
    site.env.cli("replicate", "status", "--node", "nope", check_exit=2)
