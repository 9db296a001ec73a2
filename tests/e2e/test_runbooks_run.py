"""The single-study and break-glass runbooks, executed block by block as written, against
real Orthanc nodes (the failover runbook runs in tests/e2e/test_failover.py)."""

from __future__ import annotations

import shutil

from tests.support.runbooks import run_runbook, sh_blocks
from tests.support.scenarios import env_for, primary, study_public_id


def test_single_study_recovery_runbook(tmp_path):
    with primary(tmp_path, studies=3) as (node, archive):
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")},
                      node={"vanished_alarm": 0.9})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        victim = sorted(archive.study_uids)[0]
        node.rest.delete("studies", study_public_id(archive, victim))
        run_runbook("single-study-recovery.md", {
            "DRCTL_CONFIG": str(env.config_path), "STUDY_UID": victim, "NODE": "primary"})
        assert len(sh_blocks("single-study-recovery.md")) == 3
        assert node.rest.get(f"/studies/{study_public_id(archive, victim)}/statistics")[
            "CountInstances"] == 4


def test_break_glass_runbook(tmp_path):
    with primary(tmp_path, studies=3) as (node, archive):
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")},
                      node={"vanished_alarm": 0.9})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        kit = tmp_path / "kit"
        env.cli_json("recovery-kit", "--out", str(kit))
        shutil.rmtree(env.root / "state")  # the controller is lost
        victim = sorted(archive.study_uids)[2]
        node.rest.delete("studies", study_public_id(archive, victim))
        run_runbook("break-glass-recovery.md", {
            "KIT": str(kit), "STUDY_UID": victim, "NODE": "primary"})
        assert node.rest.get(f"/studies/{study_public_id(archive, victim)}")["ID"]
