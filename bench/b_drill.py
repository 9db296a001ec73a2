"""B4: a full drill's restore and start phases (``drctl drill run --sandbox --full``,
durations from its report) against the same work done by hand: ``restic restore`` of
the storage snapshot, ``restic dump`` of its paired index copy into place, Orthanc
started on them (``--no-jobs``), polled with ``echoscu`` until the first C-ECHO.

The reference restores the index copy too: an Orthanc on a restored storage area
without its index is not the node a drill proves (it would list no study).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from sqlalchemy import select

from bench.fixtures import Fixtures
from bench.harness import Row, ceiling_row, fmt_s, interleaved, median
from drctl import execute
from drctl.catalog.models import IndexCopy, Snapshot
from drctl.indexdb import sqlite_index
from drctl.net import free_port
from drctl.pacs.orthanc.nodeconfig import OrthancSpec, write
from drctl.verify.records import record_filename
from tests.support.drctl_env import DrctlEnv

ECHO_POLL_S = 0.1  # as drctl's wait_for_echo
START_TIMEOUT_S = 120


def _snapshot_ids(env: DrctlEnv) -> tuple[str, str, int]:
    """(storage snapshot, index copy record, snapshot bytes) of the newest snapshot."""
    ctx = env.context()
    try:
        with ctx.catalog.session() as s:
            snap = s.scalars(
                select(Snapshot)
                .where(Snapshot.node == "primary")
                .order_by(Snapshot.time.desc())
                .limit(1)
            ).one()
            copy = s.get(IndexCopy, snap.index_copy_id)
            return snap.snapshot_id, copy.record_id, int(snap.total_bytes or 0)
    finally:
        ctx.catalog.close()


class RawRestore:
    """The by-hand restore of one snapshot into ``folder`` and an Orthanc on it."""

    def __init__(self, fx: Fixtures, env: DrctlEnv, snapshot: str, record: str):
        repo = env.doc["repository"]["local"]
        self.env = {
            "RESTIC_REPOSITORY": repo["url"],
            "RESTIC_PASSWORD_FILE": repo["password"].removeprefix("file:"),
            "RESTIC_CACHE_DIR": str(fx.root / "b4-raw-cache"),
        }
        self.snapshot, self.record = snapshot, record
        self.root = fx.root
        self.split: list[tuple[float, float, float]] = []  # restore, dump, start to echo
        self._restic(["snapshots", "--no-lock"], capture=True)  # a warm cache, as drctl's
        probe = self.root / "b4-index-probe"
        with open(probe, "wb") as out:
            self._restic(
                ["dump", record, "/" + record_filename("index", "primary", "sqlite")], out=out
            )
        started = time.perf_counter()
        sqlite_index.check_integrity(probe)  # what drctl does before installing a copy
        self.integrity_check_s = time.perf_counter() - started
        self.index_bytes = probe.stat().st_size
        probe.unlink()

    def _restic(self, args: list[str], *, capture: bool = False, out=None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "AWS_"))}
        subprocess.run(
            ["restic", *args],
            env={**env, **self.env},
            check=True,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=1800,
        )

    def once(self, rep: int) -> float:
        folder = self.root / f"b4-raw-{rep}"
        storage, index = folder / "storage", folder / "index"
        index.mkdir(parents=True)
        spec = OrthancSpec(
            name="rawrestore",
            aet="RAWRESTORE",
            dicom_port=free_port(),
            http_port=free_port(),
            storage_dir=storage,
            index_dir=index,
            save_jobs=False,
            stable_age=3600,
            extra={"Plugins": []},
        )
        write(spec, folder / "orthanc.json")
        orthanc = None
        try:
            started = time.perf_counter()
            self._restic(["restore", self.snapshot, "--target", str(storage)])
            restored = time.perf_counter()
            with open(index / "index", "wb") as out:
                self._restic(
                    ["dump", self.record, "/" + record_filename("index", "primary", "sqlite")],
                    out=out,
                )
            dumped = time.perf_counter()
            orthanc = subprocess.Popen(
                ["Orthanc", "--no-jobs", str(folder / "orthanc.json")],
                env={**os.environ, "TCP_NODELAY": "1"},
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while True:
                echo = execute.run(
                    ["echoscu", "-to", "1", "127.0.0.1", str(spec.dicom_port)],
                    env={"TCP_NODELAY": "1"},
                    timeout=10,
                )
                if echo.returncode == 0:
                    now = time.perf_counter()
                    self.split.append((restored - started, dumped - restored, now - dumped))
                    return now - started
                if orthanc.poll() is not None or time.perf_counter() - started > START_TIMEOUT_S:
                    raise RuntimeError("the restored Orthanc did not answer C-ECHO")
                time.sleep(ECHO_POLL_S)
        finally:
            if orthanc is not None:
                orthanc.send_signal(signal.SIGTERM)
                try:
                    orthanc.wait(30)
                except subprocess.TimeoutExpired:
                    orthanc.kill()
                    orthanc.wait()
            shutil.rmtree(folder, ignore_errors=True)


def run_b4(fx: Fixtures) -> list[Row]:
    _node, archive, env = fx.large
    snapshot, record, total = _snapshot_ids(env)
    raw = RawRestore(fx, env, snapshot, record)
    docs: list[dict] = []

    def drctl_drill(_rep: int) -> float:
        doc = env.cli_json("drill", "run", "--node", "primary", "--sandbox", "--full", expect=None)
        assert doc["state"] == "passed", doc.get("findings")
        docs.append(doc)
        phases = doc["phases"]
        return float(phases["restore"]["duration_s"]) + float(phases["start"]["duration_s"])

    pairs = interleaved(drctl_drill, raw.once, fx.sizes.reps_slow)
    restore = [float(d["phases"]["restore"]["duration_s"]) for d in docs]
    start = [float(d["phases"]["start"]["duration_s"]) for d in docs]
    row = ceiling_row(
        "B4",
        "full drill: restore + start phases (sandbox)",
        pairs,
        "restic restore + dump + Orthanc to C-ECHO",
        1.2,
        data=(
            f"{len(archive.studies)}-study snapshot ({total / 2**20:.0f} MiB, "
            f"{len(archive.paths)} files), SQLite index; local repository"
        ),
        samples={"drctl s": pairs.a, "raw s": pairs.b},
    )
    row.notes.append(
        f"drctl restore {fmt_s(median(restore))} + start {fmt_s(median(start))}; "
        f"whole drill {fmt_s(median([_total(d) for d in docs]))} (check and "
        "verify phases included)"
    )
    restic_s = [float(d["phases"]["restore"].get("restic_s") or 0) for d in docs]
    row.notes.append(
        f"drctl restore phase: restic restore {fmt_s(median(restic_s))}, the rest (sandbox "
        f"folder, restic dump of the index copy, SQLite integrity check, rename) "
        f"{fmt_s(median([r - x for r, x in zip(restore, restic_s, strict=False)]))}; "
        f"by hand: restic restore {fmt_s(median([x[0] for x in raw.split]))}, restic dump "
        f"{fmt_s(median([x[1] for x in raw.split]))}, Orthanc to first C-ECHO "
        f"{fmt_s(median([x[2] for x in raw.split]))}; drctl's SQLite integrity check of the "
        f"{raw.index_bytes / 2**20:.0f} MiB index copy alone: {fmt_s(raw.integrity_check_s)}"
    )
    if not row.met:
        row.extra["bound"] = (
            "drctl does the reference's work (the same restic restore and restic dump) plus "
            f"a SQLite integrity check of the index copy before installing it "
            f"({fmt_s(raw.integrity_check_s)} on its own here), its sandbox folder and "
            "fenced configuration, and polls C-ECHO itself; restic restore dominates both "
            "sides, and repetitions vary by more than the gap (see the samples)."
        )
    verify = [d["phases"]["verify"] for d in docs]
    row.extra.update(
        {
            "restore_s": median(restore),
            "start_s": median(start),
            "bytes": total,
            "studies": len(archive.studies),
            "check_s": median([float(d["phases"]["check"]["duration_s"]) for d in docs]),
            "index_layer_s": median([float(v.get("layers", {}).get("index", 0)) for v in verify]),
            "verify_s": median([float(v["duration_s"]) for v in verify]),
        }
    )
    return [row]


def _total(doc: dict) -> float:
    return sum(float(p.get("duration_s") or 0) for p in doc["phases"].values())
