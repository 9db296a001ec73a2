"""SQLite replication with real Orthanc nodes: the primary's index copy travels through the
restic repository and is installed at a standby Orthanc, which then answers C-FIND for the
replicated studies (and serves their images once the storage snapshot is restored).

The module's tests build on each other (one primary, one standby, one repository) to keep
Orthanc stop/starts, the slow part, few.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from drctl.catalog.models import IndexCopy, Replication
from drctl.indexdb import sqlite_index
from drctl.net import port_open
from drctl.pacs.orthanc import ids
from drctl.pacs.orthanc.inventory import SqliteInventory
from drctl.sample import SampleArchive, generate, more
from tests.support.drctl_env import DrctlEnv, make_env
from tests.support.drills import record_standby_drill
from tests.support.nodes import ManagedNode, managed_node
from tests.support.replication import (
    Loader,
    cfind_study_uids,
    kill_when,
    new_studies_up_to,
    spawn_cli,
    wait_gone,
)


@dataclasses.dataclass
class Site:
    env: DrctlEnv
    primary: ManagedNode
    standby: ManagedNode
    archive: SampleArchive  # loaded before the first backup
    later: SampleArchive  # loaded while replicating


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    root = tmp_path_factory.mktemp("replicate-sqlite")
    archive = generate(root / "sample", studies=5, series_per_study=1, instances_per_series=2)
    later = more(archive, 16)
    with ThreadPoolExecutor(2) as pool:
        primary_f = pool.submit(managed_node, root / "primary", "primary")
        standby_f = pool.submit(managed_node, root / "standby", "standby")
        primary, standby = primary_f.result(), standby_f.result()
    try:
        primary.load(archive.paths)
        nodes = {
            "primary": primary.node_table(vanished_alarm=0.5),
            "standby": standby.node_table(role="standby", primary="primary", replication="sqlite"),
        }
        env = make_env(
            root / "drctl", repositories={"local": {"url": str(root / "repo")}}, nodes=nodes
        )
        env.cli("repo", "init", check_exit=0)
        yield Site(env, primary, standby, archive, later)
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: n.stop(), (primary, standby)))


def _replications(site: Site) -> list[Replication]:
    ctx = site.env.context()
    with ctx.catalog.session() as s:
        return list(s.scalars(select(Replication).order_by(Replication.id)))


def _copy_row(site: Site, record_id: str) -> IndexCopy:
    ctx = site.env.context()
    with ctx.catalog.session() as s:
        return s.scalars(select(IndexCopy).where(IndexCopy.record_id == record_id)).one()


def test_standby_serves_the_replicated_studies(site: Site):
    backup = site.env.cli_json("backup", "run")
    assert backup["state"] == "succeeded", backup
    result = site.env.cli_json("replicate", "run")
    assert (result["state"], result["mode"], result["skipped"]) == ("succeeded", "sqlite", False)
    copy = _copy_row(site, result["details"]["record_id"])
    assert result["position"] == str(copy.change_seq)
    assert result["studies"] == copy.studies == len(site.archive.studies)
    assert result["outage_s"] > 0 and result["lag_s"] == 0.0  # the primary is idle
    assert cfind_study_uids(site.standby) == site.archive.study_uids

    # the images: restore the paired storage snapshot into the standby's storage area
    ctx = site.env.context()
    ctx.restic("local").restore(backup["snapshot_id"], site.standby.spec.storage_dir)
    instance = site.archive.instances[0]
    orthanc_id = ids.instance_id(
        instance.patient_id, instance.study_uid, instance.series_uid, instance.sop_uid
    )
    served = site.standby.rest.instance_file(orthanc_id)
    assert served == site.primary.rest.instance_file(orthanc_id)

    again = site.env.cli_json("replicate", "run")  # nothing new: no standby restart
    assert again["state"] == "succeeded" and again["skipped"] and again["outage_s"] is None
    assert len(_replications(site)) == 1

    # a drill restored a snapshot onto the standby: its index is no longer the replicated one
    record_standby_drill(ctx, backup["snapshot_id"])
    after_drill = site.env.cli_json("replicate", "run")
    assert after_drill["state"] == "succeeded" and not after_drill["skipped"], after_drill
    assert cfind_study_uids(site.standby) == site.archive.study_uids


def test_replication_while_the_primary_receives_studies(site: Site):
    loader = Loader(site.primary, site.later)
    loader.start()
    loader.wait_for(2)
    result = site.env.cli_json("replicate", "run", "--fresh")
    stored = loader.finish()
    assert result["state"] == "succeeded", result
    position = int(result["position"])
    at_position = new_studies_up_to(site.primary, position)
    total = len(site.archive.studies) + len(site.later.studies)
    # the copy was taken while studies kept arriving ...
    assert len(site.archive.studies) < at_position < total, (at_position, loader.retries)
    # ... and the standby holds exactly what the primary held at the recorded position
    assert result["studies"] == at_position
    on_standby = cfind_study_uids(site.standby)
    assert len(on_standby) == at_position
    assert on_standby <= site.archive.study_uids | set(stored)
    copy = _copy_row(site, result["details"]["record_id"])
    assert (copy.method, copy.studies, copy.change_seq) == ("stop-start", at_position, position)
    row = _replications(site)[-1]
    assert (row.position, row.studies, row.index_copy_id) == (str(position), at_position, copy.id)
    assert row.bytes == copy.bytes > 0 and row.duration_s > 0
    assert row.lag_s > 0  # the primary received more after the copy: the lag it leaves


def _intact_index(site: Site) -> set[str]:
    """The standby's (stopped) index passes its integrity check; its study UIDs."""
    sqlite_index.check_integrity(site.standby.index_file)
    with SqliteInventory(site.standby.index_file) as inventory:
        return {s.study_uid for s in inventory.study_summaries()}


def test_sigkill_never_leaves_a_half_written_standby_index(site: Site):
    before = cfind_study_uids(site.standby)
    everything = site.archive.study_uids | site.later.study_uids
    staged = sqlite_index.staged_path(site.standby.index_file)

    # 1. killed while the new copy is being staged: the standby never stopped
    proc = spawn_cli(site.env, "replicate", "run", "--fresh")
    kill_when(proc, staged.exists)
    assert port_open("127.0.0.1", site.standby.spec.dicom_port)
    assert cfind_study_uids(site.standby) == before

    # 2. killed just as the standby went down: its index is the old one or the new one
    orthanc_pid = int(site.standby.pidfile.read_text())
    proc = spawn_cli(site.env, "replicate", "run")
    kill_when(proc, lambda: not port_open("127.0.0.1", site.standby.spec.dicom_port, 0.2))
    wait_gone(orthanc_pid)
    on_disk = _intact_index(site)
    assert on_disk in (before, everything)
    site.standby.start()
    assert cfind_study_uids(site.standby) == on_disk

    status = site.env.cli("replicate", "status", check_exit=1)
    [standby] = json.loads(status.stdout)
    assert standby["last_run"]["state"] == "interrupted", standby
    assert any("interrupted" in p for p in standby["problems"])

    # 3. the next run completes the job
    result = site.env.cli_json("replicate", "run")
    assert result["state"] == "succeeded" and not result["skipped"], result
    assert cfind_study_uids(site.standby) == everything
    assert not Path(f"{site.standby.index_file}-journal").exists()
