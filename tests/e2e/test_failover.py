"""Issue 8 acceptance (site failover): the failover runbook executed as written; studies
C-STOREd to the standby while it served come back to the primary at failback; studies
deleted on the standby are listed for a person, never replayed; a failed latest drill
refuses the failover unless --force."""

from __future__ import annotations

from drctl.sample import more
from tests.support.drills import backed_up_primary, standby_node, standby_table
from tests.support.runbooks import run_runbook


def test_failover_serve_and_failback_runbook(tmp_path):
    with backed_up_primary(tmp_path, studies=6) as setup:
        standby = standby_node(tmp_path)
        try:
            setup.add_node("standby", standby_table(standby, replication="sqlite"))
            assert setup.env.cli_json("drill", "run", "--sandbox")["state"] == "passed"
            setup.env.cli_json("replicate", "run")
            variables = {"DRCTL_CONFIG": str(setup.env.config_path), "STANDBY": "standby"}
            run_runbook("site-failover-failback.md", variables, stop_before="drctl failback")
            served = {s["study_uid"] for s in setup.env.cli_json("manifest", "show", "latest")}
            assert _uids(standby) == served  # the standby serves the newest snapshot

            setup.node.stop()  # the primary site is down; the standby takes new studies
            arrived = more(setup.archive, 2, out_dir=tmp_path / "arrived")
            standby.load(arrived.paths)
            setup.node.start()  # the primary is repaired (with its old data)

            plan = setup.env.cli_json("failback", "--dry-run")
            assert plan["studies_sent"] == sorted(arrived.study_uids)
            run_runbook("site-failover-failback.md", variables, start_at="drctl failback")
            assert arrived.study_uids <= _uids(setup.node)
            proc = setup.env.cli("failback", check_exit=2)  # done: nothing left to fail back
            assert "no failover is recorded" in proc.stderr
        finally:
            standby.stop()


def test_deletions_on_the_standby_are_listed_not_replayed(tmp_path):
    with backed_up_primary(tmp_path, studies=4) as setup:
        standby = standby_node(tmp_path)
        try:
            setup.add_node("standby", standby_table(standby, replication="sqlite"))
            setup.env.cli_json("drill", "run", "--sandbox")
            assert setup.env.cli_json("failover", "--standby", "standby")["state"] == "succeeded"
            gone = sorted(setup.archive.study_uids)[0]
            standby.rest.delete("studies", _orthanc_id(setup, gone))
            result = setup.env.cli_json("failback", expect=1)
            assert result["studies_deleted_on_standby"] == [gone]
            assert result["studies_sent"] == []
            assert gone in _uids(setup.node)  # not replayed on the primary
        finally:
            standby.stop()


def test_failover_refuses_after_a_failed_drill(tmp_path):
    with backed_up_primary(tmp_path, studies=2) as setup:
        standby = standby_node(tmp_path)
        try:
            setup.add_node("standby", standby_table(standby, replication="sqlite"))
            refused = setup.env.cli_json("failover", "--standby", "standby", "--dry-run",
                                         expect=1)
            assert refused["state"] == "refused" and "no drill" in refused["steps"][0]["detail"]
            forced = setup.env.cli_json("failover", "--standby", "standby", "--dry-run",
                                        "--force")
            assert forced["state"] == "planned"
        finally:
            standby.stop()


def _uids(node) -> set[str]:
    return {node.rest.get(f"/studies/{sid}")["MainDicomTags"]["StudyInstanceUID"]
            for sid in node.rest.get("/studies")}


def _orthanc_id(setup, uid: str) -> str:
    from tests.support.drills import study_public_id

    return study_public_id(setup.archive, uid)
