"""Issue 6 acceptance, alerts: a daemon (a real ``drctl scheduler run``) whose job fails
because its repository is unreachable sends one webhook POST with the reason (not one per
failure), one email, pings its monitor, and shows the failure on its metrics endpoint; a
second daemon of the same agent on the SQLite catalog refuses to start; SIGHUP reloads the
configuration (a broken one is refused) and the job's recovery is announced."""

from __future__ import annotations

import signal
import subprocess

from drctl.net import free_port
from tests.support.drctl_env import DRCTL, RESTIC_PASSWORD, make_env
from tests.support.scheduler import (
    daemons,
    fast_repository,
    metric,
    receiver,
    scheduler_runs,
    scrape,
    smtp_server,
    wait_for,
)


def test_failing_job_alerts_once_and_metrics_show_it(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    with (
        receiver() as rec,
        smtp_server() as smtp,
        daemons(tmp_path, env={"DRCTL_TEST_HOOK": f"{rec.url}/hook"}) as group,
    ):
        env = make_env(
            tmp_path / "drctl",
            controller={"lease_ttl": "6s"},
            repositories={"vault": {"url": str(tmp_path / "no-such-repository"), "agent": "vault"}},
            schedule={"check": "every:2s"},
            notify={
                "webhook": "env:DRCTL_TEST_HOOK",
                "timeout": "3s",
                "retries": 1,
                "email": {
                    "smtp": smtp.address,
                    "from": "drctl@example.org",
                    "to": ["pacs-admins@example.org"],
                    "starttls": False,
                },
                "pings": {"check": f"{rec.url}/ping/check"},
                "metrics": {"listen": listen},
            },
        )
        url = env.doc["controller"]["catalog"]
        daemon = group.start("vault", env.config_path, "vault")

        def failed_runs() -> list:
            return [r for r in scheduler_runs(url, kind="check") if r["state"] == "failed"]

        wait_for(lambda: len(failed_runs()) >= 3, 30, what="three failed checks")
        wait_for(lambda: smtp.messages, 10, what="the email")
        wait_for(lambda: rec.posts("/hook"), 10, what="the webhook POST")
        hooks = rec.posts("/hook")
        assert len(hooks) == 1, [h.json()["kind"] for h in hooks]  # one episode, one POST
        body = hooks[0].json()
        assert body["kind"] == "run_failed" and body["job"] == "check:vault"
        assert body["repository"] == "vault" and body["agent"] == "vault"
        assert "vault" in body["reason"] and "no-such-repository" in body["reason"]
        assert body["run_id"] == failed_runs()[0]["id"]
        assert (
            len(smtp.messages) == 1
            and "check of repository vault failed" in smtp.messages[0]["data"]
        )
        paths = [r.path for r in rec.requests if r.path.startswith("/ping")]
        assert paths.count("/ping/check/start") >= 3 and paths.count("/ping/check/fail") >= 3

        page = wait_for(lambda: _scraped_failure(listen), 15, what="the failure on /metrics")
        assert (
            metric(page, "drctl_job_runs_total", job="check", target="vault", state="failed") >= 3
        )
        assert metric(page, "drctl_daemon_leader", agent="vault") == 1.0

        second = subprocess.run(
            [DRCTL, "--config", str(env.config_path), "scheduler", "run", "--agent", "vault"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 3, second.stderr
        assert "already serves agent vault" in second.stderr
        assert "one daemon per agent" in second.stderr and "Traceback" not in second.stderr

        env.config_path.write_text("this is [not toml")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration refused" in daemon.text(), 10, what="refused reload")

        fast_repository(tmp_path / "repository", RESTIC_PASSWORD)
        env.doc["repository"]["vault"]["url"] = str(tmp_path / "repository")
        env.write()
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.text(), 10, what="reload")
        wait_for(lambda: rec.alerts("run_recovered"), 30, what="the recovery notice")
        assert len(rec.alerts("run_failed")) == 1
        assert "/ping/check" in [r.path for r in rec.requests]  # a success ping

        code, took = daemon.stop()
    assert code == 0 and took < 10
    assert "Traceback" not in daemon.text()


def _scraped_failure(listen: str) -> str | None:
    page = scrape(listen)
    value = metric(page, "drctl_job_last_run_failed", job="check", target="vault")
    return page if value == 1.0 else None
