"""Issue 6 acceptance, backups on a schedule: the daemon of agent pacs1 (a real ``drctl
scheduler run``) backs up a real Orthanc primary (PostgreSQL index) every 20 seconds, on
time, cycle after cycle; ``drctl scheduler status`` shows the job, its runs and the
leader; a SIGTERM during a backup stops restic cleanly (no lock left in the repository),
records the run ``interrupted`` and ends the daemon within seconds; then the daemon of
another agent (watching only) raises one RPO alert on the webhook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drctl.net import free_port
from tests.support.drctl_env import to_toml
from tests.support.scenarios import env_for, primary, raw_restic
from tests.support.scheduler import daemons, metric, receiver, scheduler_runs, scrape, wait_for

EVERY_S = 20
MAX_RPO_S = 32


def restic_children(pid: int) -> list[str]:
    """Command lines of the restic processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and "restic" in cmdline.split(" ", 1)[0]:
            found.append(cmdline)
    return found


@pytest.fixture
def site(tmp_path):
    with primary(tmp_path / "pacs", studies=3) as (node, _archive), receiver() as hook:
        env = env_for(
            tmp_path,
            node,
            {"url": str(tmp_path / "repository")},
            node={"agent": "pacs1"},
            controller={"lease_ttl": "6s"},
            schedule={"backup": f"every:{EVERY_S}s"},
            drill={"max_rpo": f"{MAX_RPO_S}s"},
            notify={"webhook": "env:DRCTL_TEST_HOOK", "timeout": "3s"},
        )
        env.env["DRCTL_TEST_HOOK"] = f"{hook.url}/hook"
        env.cli_json("repo", "init")
        yield env, hook


def test_scheduled_backups_status_sigterm_and_rpo_watchdog(site, tmp_path):
    env, hook = site
    url = env.doc["controller"]["catalog"]
    listen = f"127.0.0.1:{free_port()}"
    watcher_config = tmp_path / "watcher.toml"
    watcher_config.write_text(
        to_toml({**env.doc, "notify": {**env.doc["notify"], "metrics": {"listen": listen}}})
    )
    with daemons(tmp_path, env=env.env) as group:
        backups = group.start("pacs1", env.config_path, "pacs1")
        watcher = group.start("dr", watcher_config, "dr")

        def good() -> list[dict]:
            return [r for r in scheduler_runs(url, kind="backup") if r["state"] == "succeeded"]

        wait_for(
            lambda: len(good()) >= 3, 3 * EVERY_S + 30, interval=0.5, what="three scheduled backups"
        )
        status = env.cli_json("scheduler", "status")

        wait_for(
            lambda: any(" backup " in c for c in restic_children(backups.pid)),
            EVERY_S + 15,
            interval=0.05,
            what="restic backing up in the next cycle",
        )
        stopped_at = datetime.now(UTC)
        code, took = backups.stop()
        assert code == 0 and took < 10, (code, took, backups.text()[-2000:])
        assert restic_children(backups.pid) == []

        breach = wait_for(
            lambda: hook.alerts("rpo_breach"),
            MAX_RPO_S + 20,
            interval=0.5,
            what="the RPO alert of the other agent's daemon",
        )
        page = scrape(listen)
        watcher.stop()

    runs = scheduler_runs(url, kind="backup")
    done = [r for r in runs if r["state"] == "succeeded"]
    # on time: one slot every 20 s, each backup started within a second of its slot
    slots = [datetime.fromisoformat(r["schedule"]["fire_at"]) for r in done]
    assert all(b - a == timedelta(seconds=EVERY_S) for a, b in zip(slots, slots[1:], strict=False))
    delays = [(r["started_at"] - s).total_seconds() for r, s in zip(done, slots, strict=True)]
    assert max(delays) < 1.5, delays
    print(
        f"\nscheduled backups: {len(done)} on time, start delays {[round(d, 3) for d in delays]}, "
        f"SIGTERM to exit {took:.1f}s"
    )

    # the backup cut by SIGTERM: interrupted, restic stopped with SIGINT and its lock gone
    last = runs[-1]
    assert last["state"] == "interrupted" and "daemon is stopping" in last["reason"]
    assert raw_restic(env, "list", "locks", "--no-lock").stdout.strip() == ""
    assert "Traceback" not in backups.text()

    # status: the job, its trigger, its runs and the leader at that time
    [agent] = [a for a in status["agents"] if a["agent"] == "pacs1"]
    [job] = agent["jobs"]
    assert job["job"] == "backup:primary" and job["trigger"] == "every 20s"
    assert job["last_success"]["state"] == "succeeded" and job["fires"] >= 3
    assert job["last_run"]["run_id"] >= done[2]["id"]
    assert agent["leader"]["pid"] == backups.pid and agent["leader"]["alive"]
    next_run = datetime.fromisoformat(job["next_run_at"])
    assert next_run == datetime.fromisoformat(job["last_fire_at"]) + timedelta(seconds=EVERY_S)
    assert any(a["agent"] == "dr" and a["leader"]["pid"] == watcher.pid for a in status["agents"])

    # the watchdog of agent dr noticed that pacs1 stopped backing up: one alert
    [alert] = breach
    assert alert["agent"] == "dr" and alert["node"] == "primary"
    assert alert["facts"]["clock"] == "image" and alert["facts"]["max_rpo_s"] == MAX_RPO_S
    assert datetime.fromisoformat(alert["at"]) > stopped_at
    assert len(hook.alerts("rpo_breach")) == 1
    assert metric(page, "drctl_rpo_breach", clock="image", node="primary") == 1.0
    assert metric(page, "drctl_snapshots", node="primary") == len(done)
    assert metric(
        page, "drctl_job_last_success_timestamp_seconds", job="backup", target="primary"
    ) == pytest.approx(done[-1]["ended_at"].timestamp(), abs=1)
