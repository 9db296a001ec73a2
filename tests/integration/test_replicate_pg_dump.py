"""PostgreSQL dump-mode replication with real Orthanc nodes on the machine's PostgreSQL:
``pg_dump`` of the running primary, ``pg_restore`` into a new standby database, name swap
while the standby is stopped. A corrupt dump and a SIGKILLed restore must leave the
standby on its previous database, answering C-FIND with the studies it had.

Faults are injected from outside drctl: a ``pg_dump`` / ``pg_restore`` placed first on the
PATH of the drctl process (a truncated dump; a restore reading its dump slowly, so that
drctl can be killed while the restore's transaction is open).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from drctl.sample import SampleArchive, generate, more
from tests.support.drctl_env import DrctlEnv, make_env
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import (
    PG_HOST,
    PG_USER,
    admin_connect,
    create_database,
    drop_database,
)
from tests.support.replication import (
    Loader,
    cfind_study_uids,
    kill_when,
    new_studies_up_to,
    spawn_cli,
)

TRUNCATING_PG_DUMP = """\
import os, subprocess, sys
args = sys.argv[1:]
code = subprocess.call(["/usr/bin/pg_dump", *args])
if code == 0:  # a transfer cut short: the table of contents survives, the data does not
    out = args[args.index("-f") + 1]
    os.truncate(out, os.path.getsize(out) * 6 // 10)
sys.exit(code)
"""

SLOW_PG_RESTORE = """\
import os, subprocess, sys, time
args = sys.argv[1:]
if "--list" in args:  # drctl's dump check: as usual
    os.execv("/usr/bin/pg_restore", ["pg_restore", *args])
restore = subprocess.Popen(["/usr/bin/pg_restore", *args[:-1]], stdin=subprocess.PIPE)
with open(args[-1], "rb") as dump:  # a slow disk: 4 KiB every 50 ms
    while chunk := dump.read(4096):
        restore.stdin.write(chunk)
        restore.stdin.flush()
        time.sleep(0.05)
restore.stdin.close()
sys.exit(restore.wait())
"""


@dataclasses.dataclass
class Site:
    env: DrctlEnv
    primary: ManagedNode
    standby: ManagedNode
    archive: SampleArchive
    later: SampleArchive
    standby_db: str
    root: Path

    @property
    def new_db(self) -> str:
        return self.standby_db + "_drctl_new"

    @property
    def prev_db(self) -> str:
        return self.standby_db + "_drctl_prev"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    root = tmp_path_factory.mktemp("replicate-pg")
    archive = generate(root / "sample", studies=6, series_per_study=1, instances_per_series=2)
    later = more(archive, 20)
    primary_db, standby_db = create_database("drctl_orthanc"), create_database("drctl_orthanc")
    with ThreadPoolExecutor(2) as pool:
        nodes = list(
            pool.map(
                lambda args: managed_node(root / args[0], args[0], postgres_db=args[1]),
                (("primary", primary_db), ("standby", standby_db)),
            )
        )
    primary, standby = nodes
    try:
        primary.load(archive.paths)
        tables = {
            "primary": primary.node_table(),
            "standby": standby.node_table(
                role="standby",
                primary="primary",
                replication="dump",
                start=standby.start_argv(),
                stop=standby.stop_argv(),
            ),
        }
        env = make_env(
            root / "drctl", repositories={"local": {"url": str(root / "repo")}}, nodes=tables
        )
        yield Site(env, primary, standby, archive, later, standby_db, root)
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: n.stop(), (primary, standby)))
        for name in (primary_db, standby_db, standby_db + "_drctl_new", standby_db + "_drctl_prev"):
            drop_database(name)


def _databases(site: Site) -> set[str]:
    with admin_connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (site.standby_db + "%",)
        ).fetchall()
    return {r[0] for r in rows}


def _standby_position(site: Site) -> int:
    """Newest change in the standby's live database (what its Orthanc serves)."""
    with psycopg.connect(host=PG_HOST, user=PG_USER, dbname=site.standby_db) as conn:
        return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]


def _fault(site: Site, program: str, source: str) -> dict:
    folder = site.root / f"fault-{program}"
    folder.mkdir(exist_ok=True)
    script = folder / program
    script.write_text(f"#!{sys.executable}\n{source}")
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def _last_run(site: Site) -> dict:
    status = site.env.cli("replicate", "status", check_exit=1)  # no images: never "ok"
    [standby] = json.loads(status.stdout)
    return standby["last_run"]


def test_dump_replication_while_the_primary_receives_studies(site: Site):
    loader = Loader(site.primary, site.later, pause=0.15)
    loader.start()
    loader.wait_for(2)
    result = site.env.cli_json("replicate", "run")
    stored = loader.finish()
    assert result["state"] == "succeeded", result
    position = int(result["position"])
    at_position = new_studies_up_to(site.primary, position)
    total = len(site.archive.studies) + len(site.later.studies)
    assert len(site.archive.studies) < at_position < total, at_position  # dumped mid-load
    assert result["studies"] == at_position  # what the dump's snapshot held
    assert _standby_position(site) == position
    on_standby = cfind_study_uids(site.standby)
    assert len(on_standby) == at_position
    assert on_standby <= site.archive.study_uids | set(stored)
    assert result["outage_s"] > 0 and result["bytes"] > 0 and result["lag_s"] > 0
    assert _databases(site) == {site.standby_db, site.prev_db}  # one previous generation


def test_corrupt_dump_keeps_the_previous_standby_database(site: Site):
    before, position = cfind_study_uids(site.standby), _standby_position(site)
    assert len(before) < len(site.primary.rest.studies(expand=False))
    proc = site.env.cli("replicate", "run", extra_env=_fault(site, "pg_dump", TRUNCATING_PG_DUMP))
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "failed" and "pg_restore" in result["reason"], result
    assert cfind_study_uids(site.standby) == before
    assert _standby_position(site) == position
    assert _databases(site) == {site.standby_db, site.prev_db}  # the half restore is gone
    last = _last_run(site)
    assert (last["run_id"], last["state"]) == (result["run_id"], "failed")


def test_killed_restore_keeps_the_previous_standby_database(site: Site):
    before, position = cfind_study_uids(site.standby), _standby_position(site)
    proc = spawn_cli(
        site.env, "replicate", "run", extra_env=_fault(site, "pg_restore", SLOW_PG_RESTORE)
    )
    with admin_connect() as watch:

        def restoring() -> bool:
            time.sleep(0.02)
            return (
                watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND application_name = 'pg_restore'",
                    (site.new_db,),
                ).fetchone()[0]
                > 0
            )

        kill_when(proc, restoring)
    assert cfind_study_uids(site.standby) == before  # never stopped, never swapped
    assert _standby_position(site) == position
    assert _last_run(site)["state"] == "interrupted"

    result = site.env.cli_json("replicate", "run")  # the next run cleans up and completes
    assert result["state"] == "succeeded", result
    assert result["details"]["cleaned_up"] == [site.new_db]
    assert cfind_study_uids(site.standby) == site.archive.study_uids | site.later.study_uids
    assert _databases(site) == {site.standby_db, site.prev_db}
