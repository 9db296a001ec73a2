"""What the benchmarks measure against, built once per run and shared (loading time is
never measured): Orthanc nodes loaded with archives, drctl installations with their
repositories and first backups. Everything started here is stopped by :meth:`close`.

Sizes (full run / ``--quick``) are in :class:`Sizes`; each benchmark says in its row
what it used.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bench.archives import Archive, ct_archive, load, sample_archive
from drctl.dicom.peers import Peer
from tests.support.drctl_env import DrctlEnv, make_env
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import create_database, drop_database

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Sizes:
    # B1 / B7: studies x series x instances on the verification node
    verify_studies: int = 2000
    verify_instances: int = 2  # one series per study
    per_study_findscu: int = 200
    served_sample: int = 200
    # B2 / B3: CT studies (2 series x ct_instances slices of ~525 kB) on a PostgreSQL node
    ct_studies: int = 100
    ct_instances: int = 20
    new_share: float = 0.01
    # B4 / B5: a large and a small snapshot (one instance per study)
    large_studies: int = 10_000
    small_studies: int = 100
    # repetitions
    reps_fast: int = 5  # B1, B7
    reps_slow: int = 3  # B2, B4, B5
    scheduler_idle_s: float = 60.0


FULL = Sizes()
QUICK = Sizes(
    verify_studies=100,
    per_study_findscu=10,
    served_sample=20,
    ct_studies=4,
    ct_instances=3,
    new_share=0.25,
    large_studies=300,
    small_studies=30,
    reps_fast=3,
    reps_slow=2,
    scheduler_idle_s=8.0,
)


class Fixtures:
    """Lazily built, shared test beds (see the module doc)."""

    def __init__(self, root: Path, sizes: Sizes):
        self.root = root
        self.sizes = sizes
        self.stack = contextlib.ExitStack()
        self.setup_s: dict[str, float] = {}
        root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.stack.close()

    # --- building blocks -------------------------------------------------------------

    def node(self, name: str, *, postgres: bool = False) -> ManagedNode:
        """A running Orthanc (TCP_NODELAY, DRCTL declared) in ``root/name``; stopped
        (and its database dropped) at close."""
        database = create_database("drctl_bench") if postgres else None
        if database:
            self.stack.callback(drop_database, database)
        node = managed_node(self.root / name, name, postgres_db=database)
        self.stack.callback(node.stop)
        return node

    def drctl(self, name: str, nodes: dict, *, drill: dict | None = None) -> DrctlEnv:
        """A drctl installation with a local repository of its own (initialised)."""
        folder = self.root / name
        env = make_env(
            folder / "drctl",
            repositories={"local": {"url": str(folder / "repo")}},
            nodes=nodes,
            drill={"sandbox_dir": str(folder / "sandbox"), **(drill or {})},
        )
        env.cli("repo", "init", check_exit=0)
        return env

    def _timed(self, what: str, started: float) -> None:
        self.setup_s[what] = round(time.monotonic() - started, 1)
        log.info("setup %s: %.1fs", what, self.setup_s[what])

    # --- B1 / B7: a node holding many small studies ------------------------------------

    @cached_property
    def verify_node(self) -> tuple[ManagedNode, Archive]:
        started = time.monotonic()
        s = self.sizes
        archive = sample_archive(
            self.root / "verify-sample",
            studies=s.verify_studies,
            series=1,
            instances=s.verify_instances,
            seed=11,
        )
        node = self.node("verify")
        load(archive.paths, aet=node.spec.aet, port=node.spec.dicom_port)
        self._timed("verification node", started)
        return node, archive

    # --- B2 / B3: a PostgreSQL-indexed primary with clinical-size CT studies ---------

    @cached_property
    def ct_primary(self) -> tuple[ManagedNode, Archive]:
        started = time.monotonic()
        s = self.sizes
        archive = ct_archive(
            self.root / "ct-sample",
            studies=s.ct_studies,
            series=2,
            instances=s.ct_instances,
            seed=21,
        )
        node = self.node("ctprimary", postgres=True)
        load(archive.paths, aet=node.spec.aet, port=node.spec.dicom_port)
        self._timed("CT primary (PostgreSQL index)", started)
        return node, archive

    def more_ct(self, batch: int) -> Archive:
        """1% more studies (``new_share``) on the CT primary; returns them."""
        node, archive = self.ct_primary
        count = max(1, round(self.sizes.ct_studies * self.sizes.new_share))
        first = self.sizes.ct_studies + 1 + batch * count
        extra = ct_archive(
            self.root / "ct-sample",
            studies=count,
            series=2,
            instances=self.sizes.ct_instances,
            seed=21,
            first=first,
        )
        load(extra.paths, aet=node.spec.aet, port=node.spec.dicom_port)
        return extra

    # --- B4 / B5: backed-up primaries with a large and a small snapshot ---------------

    @cached_property
    def restore_target(self) -> ManagedNode:
        return self.node("target")

    def _backed_up(
        self, name: str, studies: int, seed: int
    ) -> tuple[ManagedNode, Archive, DrctlEnv]:
        started = time.monotonic()
        archive = sample_archive(
            self.root / f"{name}-sample", studies=studies, series=1, instances=1, seed=seed
        )
        node = self.node(name)
        load(archive.paths, aet=node.spec.aet, port=node.spec.dicom_port)
        target = self.restore_target
        env = self.drctl(
            f"{name}-drctl", {"primary": node.node_table(), "target": target.node_table()}
        )
        backup = env.cli_json("backup", "run", "--node", "primary")
        assert backup["state"] == "succeeded", backup
        self._timed(f"{studies}-study primary, loaded and backed up", started)
        return node, archive, env

    @cached_property
    def large(self) -> tuple[ManagedNode, Archive, DrctlEnv]:
        return self._backed_up("large", self.sizes.large_studies, seed=31)

    @cached_property
    def small(self) -> tuple[ManagedNode, Archive, DrctlEnv]:
        return self._backed_up("small", self.sizes.small_studies, seed=32)


def peer_of(node: ManagedNode) -> Peer:
    return Peer(node.spec.aet, "127.0.0.1", node.spec.dicom_port)


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
