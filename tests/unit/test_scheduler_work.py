"""What the scheduler reads from each action's result, with the actions' own result types
(so a renamed field breaks here, not in a daemon at 2 a.m.)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from drctl.actions import backup, check, drill, indexcopy, prune, replicate
from drctl.reports.model import DrillReport
from drctl.scheduler.work import ACTIONS

CTX = SimpleNamespace()


def test_backup_outcome_carries_state_reason_and_vanished_studies(monkeypatch):
    result = backup.BackupResult(
        7,
        "abc",
        "pacs1",
        "offsite",
        bytes_added=42,
        state="warning",
        reason="2 vanished studies",
        unacknowledged_vanished=["1.2.3"],
    )
    monkeypatch.setattr(backup, "run_backup", lambda ctx, node: result)
    out = ACTIONS["backup"](CTX, "pacs1")
    assert (out.state, out.reason, out.run_id, out.vanished) == (
        "warning",
        "2 vanished studies",
        7,
        ["1.2.3"],
    )
    assert out.details["bytes_added"] == 42


def test_check_damage_is_a_failed_job(monkeypatch):
    result = check.CheckResult("offsite", "1/28", False, 1.0, 9, error="pack 12ab damaged")
    monkeypatch.setattr(check, "run_check", lambda ctx, repository: result)
    out = ACTIONS["check"](CTX, "offsite")
    assert (out.state, out.reason, out.run_id) == ("failed", "pack 12ab damaged", 9)


def test_a_refused_prune_is_a_failed_job(monkeypatch):
    plan = prune.PrunePlan(
        "offsite", 10, ["a"] * 5, ["b"] * 5, refusals=["the plan would forget 5 of 10 snapshots"]
    )
    monkeypatch.setattr(prune, "run_prune", lambda ctx, repository: plan)
    out = ACTIONS["prune"](CTX, "offsite")
    assert out.state == "failed" and "forget 5 of 10" in out.reason


def test_replication_and_index_copy(monkeypatch):
    rep = replicate.ReplicationResult(
        3, "dr", "pacs1", "dump", state="failed", reason="paused: circuit breaker open", paused=True
    )
    monkeypatch.setattr(replicate, "run_replicate", lambda ctx, standby: rep)
    out = ACTIONS["replicate"](CTX, "dr")
    assert (out.state, out.run_id, out.details["paused"]) == ("failed", 3, True)
    monkeypatch.setattr(
        indexcopy,
        "run_index_copy",
        lambda ctx, node: {"run_id": 4, "state": "succeeded", "record_id": "r"},
    )
    assert ACTIONS["index_copy"](CTX, "pacs1").run_id == 4


@pytest.mark.parametrize("verdict,state", [("passed", "succeeded"), ("failed", "failed")])
def test_drill_verdict(monkeypatch, verdict, state):
    names = {f.name for f in dataclasses.fields(DrillReport)}
    used = {
        "drill_id",
        "verdict",
        "snapshot_id",
        "standby",
        "rto_s",
        "rpo_s",
        "findings",
        "report_path",
        "run_id",
        "reason",
    }
    assert used <= names
    report = SimpleNamespace(
        drill_id=5,
        verdict=verdict,
        snapshot_id="s",
        standby="sandbox",
        rto_s=12.0,
        rpo_s=30.0,
        findings=[],
        report_path="/r.html",
        run_id=11,
        reason=None if verdict == "passed" else "study_missing",
    )
    seen = {}

    def fake(ctx, options):
        seen["node"] = options.node
        return report

    monkeypatch.setattr(drill, "run_drill", fake)
    out = ACTIONS["drill"](CTX, "pacs1")
    assert seen["node"] == "pacs1" and out.state == state and out.run_id == 11
    assert out.drill["verdict"] == verdict and out.drill["rto_s"] == 12.0
