"""The audit trail: every run appended to a hash chain, anchored in the repository; an
edited, a deleted and a truncated row are each detected by `drctl audit verify`."""

from __future__ import annotations

import sqlite3

import pytest

from tests.support.drctl_env import make_env


@pytest.fixture
def audited(tmp_path):
    env = make_env(tmp_path / "drctl", repositories={"local": {"url": str(tmp_path / "repo")}})
    env.cli_json("repo", "init")
    for _ in range(3):
        env.cli_json("check")
    return env


def _db(env) -> sqlite3.Connection:
    return sqlite3.connect(env.root / "state" / "catalog.db")


def test_intact_chain_with_anchors(audited):
    report = audited.cli_json("audit", "verify")
    assert report["ok"] and report["events"] == 4
    assert report["anchors"]["local"] == 4
    with _db(audited) as db:
        rows = db.execute("SELECT command, result FROM audit_events ORDER BY id").fetchall()
    assert rows[0] == (f"drctl --config {audited.config_path} --json repo init",
                       "succeeded")


def test_edited_row_is_detected(audited):
    with _db(audited) as db:
        db.execute("UPDATE audit_events SET result = 'succeeded', command = 'drctl check' "
                   "WHERE id = 2")
    report = audited.cli_json("audit", "verify", expect=1)
    assert any("event 2" in p and "edited" in p for p in report["problems"])


def test_deleted_row_is_detected(audited):
    with _db(audited) as db:
        db.execute("DELETE FROM audit_events WHERE id = 2")
    report = audited.cli_json("audit", "verify", expect=1)
    assert any("missing" in p for p in report["problems"])


def test_truncated_tail_is_detected_even_after_new_runs(audited):
    with _db(audited) as db:
        db.execute("DELETE FROM audit_events WHERE id >= 3")
    audited.cli_json("check")  # a new run appends and anchors the shortened chain
    report = audited.cli_json("audit", "verify", expect=1)
    assert any("event 4" in p for p in report["problems"])
