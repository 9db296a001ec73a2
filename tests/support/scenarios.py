"""Building blocks for end-to-end scenarios: a primary node with a PostgreSQL index (online
index copies: fast) or a SQLite index (stop-start), loaded with a sample archive, and a
drctl environment pointing at it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from drctl.pacs.orthanc import ids
from drctl.sample import SampleArchive, generate
from tests.support.drctl_env import DrctlEnv, make_env
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import create_database, drop_database
from tests.support.s3 import S3_KEY_ID, S3_SECRET


@contextlib.contextmanager
def primary(folder: Path, *, studies: int = 6, postgres: bool = True, seed: int = 0,
            **spec_args) -> Iterator[tuple[ManagedNode, SampleArchive]]:
    db = create_database("drctl_orthanc") if postgres else None
    node = managed_node(folder / "node", "primary", postgres_db=db, **spec_args)
    try:
        archive = generate(folder / "sample", studies=studies, seed=seed, series_per_study=2,
                           instances_per_series=2)
        node.load(archive.paths)
        yield node, archive
    finally:
        node.stop()
        if db:
            drop_database(db)


def s3_repository(moto, bucket: str) -> dict:
    return {"url": moto.repo_url(bucket), "aws_access_key_id": "env:DRCTL_TEST_S3_KEY",
            "aws_secret_access_key": "env:DRCTL_TEST_S3_SECRET"}


def s3_env_vars() -> dict:
    return {"DRCTL_TEST_S3_KEY": S3_KEY_ID, "DRCTL_TEST_S3_SECRET": S3_SECRET}


def env_for(folder: Path, pacs: ManagedNode, repository: dict, **kw) -> DrctlEnv:
    """A drctl config for ``pacs`` as node "primary"; ``node={...}`` overrides its table."""
    node_over = kw.pop("node", {})
    env = make_env(folder / "drctl", repositories={"offsite": repository},
                   nodes={"primary": pacs.node_table(**node_over)}, **kw)
    env.env.update(s3_env_vars())
    return env


def study_public_id(archive: SampleArchive, study_uid: str) -> str:
    return ids.study_id(archive.study(study_uid).patient_id, study_uid)


def node_instance_count(node: ManagedNode, archive: SampleArchive, study_uid: str) -> int:
    stats = node.rest.get(f"/studies/{study_public_id(archive, study_uid)}/statistics")
    return int(stats["CountInstances"])


def raw_restic(env: DrctlEnv, *args: str) -> subprocess.CompletedProcess:
    """restic itself, as an admin would run it against the same repository."""
    repo = env.doc["repository"]["offsite"]
    child = {**os.environ, "RESTIC_REPOSITORY": repo["url"],
             "RESTIC_PASSWORD_FILE": repo["password"].removeprefix("file:"),
             "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
             "RESTIC_CACHE_DIR": str(env.root / "raw-cache")}
    return subprocess.run(["restic", *args], capture_output=True, text=True, env=child,
                          timeout=120, check=True)
