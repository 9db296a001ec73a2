"""Issue 3 acceptance: PACS-aware snapshots of a live Orthanc: consistent index copies,
manifests that match the node, incremental work, vanished studies and the circuit
breaker, bit rot noticed, and a catalog rebuilt from the repository alone."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from drctl.sample import more
from tests.support.scenarios import (
    env_for,
    node_instance_count,
    primary,
    raw_restic,
    study_public_id,
)


def local_repo(tmp_path) -> dict:
    return {"url": str(tmp_path / "repo")}


def test_online_copy_while_c_stores_keep_arriving(tmp_path):
    """PostgreSQL index: pg_dump on an exported snapshot while the node keeps storing."""
    with primary(tmp_path, studies=6) as (node, archive):
        env = env_for(tmp_path, node, local_repo(tmp_path))
        env.cli_json("repo", "init")
        incoming = more(archive, 12, out_dir=tmp_path / "incoming")
        loader = threading.Thread(target=lambda: [node.load([p]) for p in incoming.paths])
        loader.start()
        try:
            result = env.cli_json("backup", "run")
        finally:
            loader.join()
        assert result["state"] == "succeeded"
        assert result["index_copy"]["method"] == "online"
        manifest = {s["study_uid"]: s for s in env.cli_json("manifest", "show", "latest")}
        for uid in archive.study_uids:  # present before the backup: complete and equal
            assert manifest[uid]["instances"] == node_instance_count(node, archive, uid) == 4
        for uid in set(manifest) - archive.study_uids:  # arrived during: never more than now
            assert manifest[uid]["instances"] <= node_instance_count(node, incoming, uid)
        assert len(manifest) == result["studies"]


def test_stop_start_copy_of_a_sqlite_index(tmp_path):
    with primary(tmp_path, studies=4, postgres=False) as (node, archive):
        env = env_for(tmp_path, node, local_repo(tmp_path))
        env.cli_json("repo", "init")
        result = env.cli_json("backup", "run")
        assert result["state"] == "succeeded"
        assert result["index_copy"]["method"] == "stop-start"
        assert 0 < result["index_copy"]["outage_s"] < 30
        node.rest.system()  # the node is back
        manifest = {s["study_uid"]: s for s in env.cli_json("manifest", "show", "latest")}
        assert set(manifest) == archive.study_uids
        assert all(s["instances"] == 4 and s["series"] == 2 for s in manifest.values())
        # the live index inside the storage area is not in the storage snapshot
        files = raw_restic(env, "ls", result["snapshot_id"]).stdout.split()
        assert "/index" not in files and not any(f.startswith("/index-") for f in files)


def test_incremental_work_is_proportional_to_new_instances(tmp_path):
    with primary(tmp_path, studies=8) as (node, archive):
        env = env_for(tmp_path, node, local_repo(tmp_path))
        env.cli_json("repo", "init")
        first = env.cli_json("backup", "run")
        assert first["manifest"]["files_read"] == 32
        added = more(archive, 3, out_dir=tmp_path / "added")
        node.load(added.paths)
        second = env.cli_json("backup", "run")
        assert second["manifest"]["full_read"] is False
        assert second["manifest"]["files_read"] == 12  # 3 studies x 4 instances, nothing else
        assert second["manifest"]["rows_read"] == 12
        assert second["files_new"] == 12
        parents = {s["id"]: s.get("parent") for s in
                   json.loads(raw_restic(env, "snapshots", "--json").stdout)}
        assert parents[second["snapshot_id"]] == first["snapshot_id"]
        diff = env.cli_json("manifest", "diff", first["snapshot_id"][:8],
                            second["snapshot_id"][:8])
        assert sorted(s["study_uid"] for s in diff["added"]) == sorted(added.study_uids)
        assert diff["removed"] == [] and diff["changed"] == []


def test_vanished_study_warns_until_acknowledged_and_mass_deletion_trips(tmp_path):
    with primary(tmp_path, studies=10) as (node, archive):
        env = env_for(tmp_path, node, local_repo(tmp_path), node={"vanished_alarm": 0.2})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        victim = sorted(archive.study_uids)[0]
        node.rest.delete("studies", study_public_id(archive, victim))
        proc = env.cli("backup", "run", check_exit=1)
        result = json.loads(proc.stdout)
        assert result["state"] == "warning" and result["vanished"] == [victim]
        assert victim in result["reason"]
        env.cli_json("backup", "run", expect=1)  # still warning: not acknowledged
        env.cli_json("studies", "ack-vanished", victim, "--reason", "QC: duplicate")
        assert env.cli_json("backup", "run")["state"] == "succeeded"
        located = env.cli_json("studies", "locate", victim)
        assert located and all(r["instances"] == 4 for r in located)

        for uid in sorted(archive.study_uids)[1:4]:  # 3 of the 9 left: 33% > 20%
            node.rest.delete("studies", study_public_id(archive, uid))
        tripped = env.cli_json("backup", "run", expect=1)
        assert tripped["state"] == "failed" and "circuit breaker" in tripped["reason"]
        alarms = env.cli_json("alarms", "list", expect=1)
        assert [a["kind"] for a in alarms] == ["mass_deletion"]
        plan = env.cli_json("prune", "--dry-run", expect=1)
        assert plan[0]["refused"] and any("circuit breaker" in r for r in plan[0]["refusals"])


def test_altered_stored_file_is_reported_with_its_study(tmp_path):
    with primary(tmp_path, studies=4) as (node, archive):
        # one rewritten file of 16 is a finding, not (yet) the mass-modification breaker
        env = env_for(tmp_path, node, local_repo(tmp_path), node={"modified_alarm": 0.5})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        victim = sorted(archive.study_uids)[1]
        instance = node.rest.get(f"/studies/{study_public_id(archive, victim)}/instances")[0]
        uuid = node.rest.get(f"/instances/{instance['ID']}/attachments/dicom/info")["Uuid"]
        path = node.spec.storage_dir / uuid[:2] / uuid[2:4] / uuid
        data = bytearray(path.read_bytes())
        data[-100:-90] = b"\xff" * 10
        path.write_bytes(bytes(data))
        later = time.time() + 5
        os.utime(path, (later, later))
        result = env.cli_json("backup", "run", expect=1)
        assert result["state"] == "warning"
        kinds = {(f["kind"], f["study_uid"]) for f in result["findings"]}
        assert ("source_modified", victim) in kinds


def test_catalog_rebuilt_from_the_repository_alone(tmp_path):
    with primary(tmp_path, studies=5) as (node, archive):
        env = env_for(tmp_path, node, local_repo(tmp_path))
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        node.load(more(archive, 2, out_dir=tmp_path / "more").paths)
        node.rest.delete("studies", study_public_id(archive, sorted(archive.study_uids)[0]))
        env.cli_json("backup", "run", expect=1)
        before = (env.cli_json("snapshots", "list"), env.cli_json("manifest", "show", "latest"))
        first = before[0][0]["snapshot_id"]
        before_first = env.cli_json("manifest", "show", first[:8])
        (env.root / "state" / "catalog.db").unlink()
        rebuilt = env.cli_json("catalog", "rebuild")
        assert rebuilt[0]["snapshots"] == 2 and rebuilt[0]["manifests"] == 2
        after = (env.cli_json("snapshots", "list"), env.cli_json("manifest", "show", "latest"))
        assert after == before
        assert env.cli_json("manifest", "show", first[:8]) == before_first
        with pytest.raises(AssertionError):  # a second rebuild refuses to duplicate
            env.cli_json("catalog", "rebuild")
