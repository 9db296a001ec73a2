"""Building blocks for drill tests: a primary Orthanc loaded with a sample archive and
backed up once into a local restic repository (shared per module: drills only read it),
standby nodes, fault injections on restored data, and a look at a report in Chromium."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drctl.actions.drill import DrillOptions, run_drill
from drctl.catalog.models import Drill
from drctl.pacs.orthanc import ids
from drctl.reports.model import DrillReport
from drctl.sample import SampleArchive, generate
from tests.support.drctl_env import DrctlEnv, make_env
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import create_database, drop_database

# the keys `drctl drill run/show --json` starts with, in cli.md's order
DRILL_JSON_KEYS = (
    "drill_id",
    "snapshot_id",
    "standby",
    "state",
    "studies_expected",
    "studies_verified",
    "findings",
    "rto_s",
    "rpo_s",
    "report",
)


def record_standby_drill(ctx, snapshot_id: str, standby: str = "standby") -> None:
    """A passed partial drill of ``snapshot_id`` onto ``standby``, as the catalog records
    one: the standby's index is then the drill's, no longer the replicated one."""
    with ctx.catalog.session() as s:
        s.add(
            Drill(
                site=ctx.site,
                node="primary",
                repository="local",
                standby=standby,
                snapshot_id=snapshot_id,
                scope="partial",
                verdict="passed",
                started_at=datetime.now(UTC),
            )
        )


@dataclass
class BackedUp:
    """A primary with its archive, a drctl env around it, and the backup's JSON."""

    root: Path
    node: ManagedNode
    archive: SampleArchive
    env: DrctlEnv
    backup: dict
    database: str | None = None

    def drill(self, **options) -> DrillReport:
        """One drill in-process (hooks allowed); returns its report."""
        ctx = self.env.context()
        try:
            return run_drill(ctx, DrillOptions(**options))
        finally:
            ctx.catalog.close()

    def manifest_uids(self) -> set[str]:
        return {s["study_uid"] for s in self.env.cli_json("manifest", "show", "latest")}

    def add_node(self, name: str, table: dict) -> None:
        self.env.doc["node"][name] = table
        self.env.write()


@contextlib.contextmanager
def backed_up_primary(
    root: Path,
    *,
    studies: int,
    series: int = 1,
    instances: int = 2,
    postgres: bool = False,
    drill: dict | None = None,
    repository: dict | None = None,
    seed: int = 7,
    **spec_args,
) -> Iterator[BackedUp]:
    """A loaded primary (SQLite index with stop-start copies, or a PostgreSQL index),
    a local repository and one backup. Stops the node (and drops its database) at exit."""
    database = create_database("drctl_drill") if postgres else None
    node = managed_node(root / "primary", "primary", postgres_db=database, **spec_args)
    try:
        archive = generate(
            root / "sample",
            studies=studies,
            series_per_study=series,
            instances_per_series=instances,
            seed=seed,
        )
        node.load(archive.paths)
        env = make_env(
            root / "drctl",
            repositories={"local": {"url": str(root / "repo"), **(repository or {})}},
            nodes={"primary": node.node_table()},
            drill={"sandbox_dir": str(root / "sandbox"), **(drill or {})},
        )
        env.cli("repo", "init", check_exit=0)
        backup = env.cli_json("backup", "run")
        assert backup["state"] == "succeeded", backup
        yield BackedUp(root, node, archive, env, backup, database)
    finally:
        node.stop()
        if database:
            drop_database(database)


def standby_node(root: Path, name: str = "standby", **spec_args) -> ManagedNode:
    """A running, empty standby (SQLite index inside its storage folder)."""
    return managed_node(root / name, name, **spec_args)


def standby_table(node: ManagedNode, **overrides) -> dict:
    table = node.node_table(role="standby", primary="primary")
    table.pop("index_copy", None)
    table.update({"start": node.start_argv(), "stop": node.stop_argv(), **overrides})
    return table


# --- fault injection on restored data (before the node starts) -------------------------


def manifest_instances(env: DrctlEnv, study_uids=None) -> list:
    from drctl.actions.snapshots import resolve_snapshot
    from drctl.verify.manifest_store import instances_at

    ctx = env.context()
    try:
        snap = resolve_snapshot(ctx, "latest")
        with ctx.catalog.session() as s:
            return instances_at(s, ctx.site, "primary", snap.seq, study_uids)
    finally:
        ctx.catalog.close()


def remove_series_rows(index: Path, series_uid: str) -> int:
    """Delete one series (and its instances) from a restored Orthanc SQLite index, as a
    damaged index copy would lack them. Returns how many instances it had. (Orthanc's
    database numbers resource types from 1 = patient: a series is 3.)"""
    conn = sqlite3.connect(index)
    try:
        # Orthanc's triggers call functions it registers itself; here they do nothing.
        conn.create_function("SignalFileDeleted", -1, lambda *a: None)
        conn.create_function("SignalResourceDeleted", -1, lambda *a: None)
        conn.create_function("SignalRemainingAncestor", -1, lambda *a: None)
        row = conn.execute(
            "SELECT r.internalId FROM Resources r JOIN DicomIdentifiers d ON d.id = r.internalId "
            "WHERE r.resourceType = 3 AND d.tagGroup = 32 AND d.tagElement = 14 AND d.value = ?",
            (series_uid,),
        ).fetchone()
        assert row is not None, f"series {series_uid} not in {index}"
        children = [
            r[0]
            for r in conn.execute("SELECT internalId FROM Resources WHERE parentId = ?", (row[0],))
        ]
        ids_ = [row[0], *children]
        marks = ",".join("?" * len(ids_))
        for table in ("MainDicomTags", "DicomIdentifiers", "Metadata", "AttachedFiles"):
            conn.execute(f"DELETE FROM {table} WHERE id IN ({marks})", ids_)
        conn.execute(f"DELETE FROM Changes WHERE internalId IN ({marks})", ids_)
        conn.execute(f"DELETE FROM Resources WHERE internalId IN ({marks})", ids_)
        left = conn.execute(
            f"SELECT COUNT(*) FROM Resources WHERE internalId IN ({marks})", ids_
        ).fetchone()[0]
        assert left == 0
        conn.commit()
        return len(children)
    finally:
        conn.close()


def flip_byte_near_end(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x5A
    path.write_bytes(bytes(data))


def study_public_id(archive: SampleArchive, study_uid: str) -> str:
    return ids.study_id(archive.study(study_uid).patient_id, study_uid)


def copy_env(source: BackedUp, root: Path) -> DrctlEnv:
    """A second drctl installation with copies of ``source``'s repository and catalog
    (for tests that damage the repository)."""
    root.mkdir(parents=True)
    shutil.copytree(source.root / "repo", root / "repo")
    shutil.copytree(
        source.env.root / "state",
        root / "drctl" / "state",
        ignore=shutil.ignore_patterns("locks", "sandbox"),
    )
    doc = json.loads(json.dumps(source.env.doc))
    doc["controller"]["data_dir"] = str(root / "drctl" / "state")
    doc["controller"]["catalog"] = f"sqlite:///{root / 'drctl' / 'state' / 'catalog.db'}"
    doc["repository"]["local"]["url"] = str(root / "repo")
    (root / "drctl").mkdir(exist_ok=True)
    shutil.copytree(source.env.root / "secrets", root / "drctl" / "secrets")
    env = DrctlEnv(root / "drctl", root / "drctl" / "drctl.toml", doc)
    env.write()
    return env


# --- a report in a real browser ---------------------------------------------------------


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(page: Path, *, screenshot: Path | None = None, size: str = "1100,900") -> str:
    """Open ``page`` in headless Chromium; returns its DOM (and writes a screenshot)."""
    with tempfile.TemporaryDirectory(prefix="drctl-chromium-") as profile:
        base = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        if screenshot is not None:
            subprocess.run(
                [*base, f"--window-size={size}", f"--screenshot={screenshot}", page.as_uri()],
                capture_output=True,
                timeout=120,
                check=True,
            )
        dom = subprocess.run(
            [*base, "--dump-dom", page.as_uri()], capture_output=True, timeout=120, check=True
        )
    return dom.stdout.decode("utf-8")


def png_pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    """The RGB colour of one pixel of an 8-bit RGB/RGBA PNG (no Pillow here)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, _, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6), header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    for row in range(y + 1):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, bpp)
        previous = line
    return tuple(previous[x * bpp : x * bpp + 3])  # type: ignore[return-value]


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + a) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + b) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (a + b) // 2) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
