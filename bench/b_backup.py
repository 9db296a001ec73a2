"""B2: ``drctl backup run`` of a PostgreSQL-indexed Orthanc, first and incremental (1%
new), against raw ``pg_dump`` + one ``restic backup`` of the same storage tree and dump
into an equivalent (local) repository. B3: drctl's manifest and integrity work in the
incremental backups against the same work in the first ones (same runs).

drctl runs as a user runs it (the CLI, ``--json``); its per-step seconds come from the
``phases`` of its JSON result. Each first backup goes to a fresh repository (and a fresh
catalog); the incremental ones continue the last pair, after loading 1% more studies
(not measured) into the primary.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from bench.fixtures import Fixtures
from bench.harness import (
    Pairs,
    Row,
    ceiling_row,
    children_cpu,
    interleaved,
    median,
    profiled,
    stopwatch,
    subprocess_log,
)
from drctl import execute
from drctl.actions.backup import run_backup
from tests.support.drctl_env import RESTIC_PASSWORD, DrctlEnv

# drctl's manifest and integrity work (B3), as recorded in a backup's phases
MANIFEST_PHASES = ("manifest_read_s", "plan_s", "integrity_s", "modified_s", "catalog_s")


class RawBackup:
    """What an admin would script by hand: ``pg_dump`` into a staging folder, then one
    ``restic backup`` of the storage tree and the dump (same repository format)."""

    def __init__(self, folder: Path, database: str, storage: Path, password_file: Path):
        self.folder = folder
        self.staging = folder / "staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.database, self.storage = database, storage
        self.env = {
            "RESTIC_REPOSITORY": str(folder / "repo"),
            "RESTIC_PASSWORD_FILE": str(password_file),
            "RESTIC_CACHE_DIR": str(folder / "cache"),
        }
        self._run(["restic", "init"])
        self.summaries: list[dict] = []
        self.split: list[tuple[float, float]] = []  # (pg_dump s, restic s) per backup
        self.cpu: list[float] = []  # CPU seconds of pg_dump and restic per backup

    def _run(self, argv: list[str]) -> execute.Result:
        result = execute.run(
            argv, env=self.env, env_drop_prefixes=("RESTIC_", "AWS_"), timeout=3600
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr_text[-800:]}")
        return result

    def backup(self) -> None:
        cpu = children_cpu()
        started = time.perf_counter()
        self._run(
            [
                "pg_dump",
                "-Fc",
                "--no-owner",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-f",
                str(self.staging / "index.dump"),
                self.database,
            ]
        )
        dumped = time.perf_counter()
        out = self._run(
            [
                "restic",
                "--json",
                "backup",
                "--host",
                "bench/raw",
                "--",
                str(self.storage),
                str(self.staging),
            ]
        )
        self.split.append((dumped - started, time.perf_counter() - dumped))
        self.cpu.append(children_cpu() - cpu)
        for line in reversed(out.stdout.splitlines()):
            if '"summary"' in line:
                self.summaries.append(json.loads(line))
                break


def _manifest_work(doc: dict) -> float:
    return sum(float(doc["phases"].get(k, 0.0)) for k in MANIFEST_PHASES)


def run_b2(fx: Fixtures) -> list[Row]:
    node, archive = fx.ct_primary
    s = fx.sizes
    table = node.node_table()
    database = node.spec.postgres.database
    storage = node.spec.storage_dir
    docs_first: list[dict] = []
    docs_incr: list[dict] = []
    current: dict[str, object] = {}

    def fresh(key: str, folder: Path) -> None:
        old = current.get(key + "_folder")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # a GB-sized repository per repetition
        current[key + "_folder"] = folder

    def drctl_first(rep: int) -> float:
        fresh("drctl", fx.root / f"b2-drctl-{rep}")
        env = fx.drctl(f"b2-drctl-{rep}", {"primary": table})
        current["drctl"] = env
        return _drctl_backup(env, docs_first)

    raws: list[RawBackup] = []
    password = fx.root / "b2-restic.pass"
    password.write_text(RESTIC_PASSWORD + "\n")
    password.chmod(0o600)

    def raw_first(rep: int) -> float:
        folder = fx.root / f"b2-raw-{rep}"
        fresh("raw", folder)
        raw = RawBackup(folder, database, storage, password)
        current["raw"] = raw
        raws.append(raw)
        with stopwatch() as elapsed:
            raw.backup()
        return elapsed()

    first = interleaved(drctl_first, raw_first, s.reps_slow)
    incremental = Pairs()
    new_bytes = []
    for rep in range(s.reps_slow):
        extra = fx.more_ct(rep)
        new_bytes.append(extra.bytes)
        env, raw = current["drctl"], current["raw"]
        if rep % 2 == 0:
            incremental.a.append(_drctl_backup(env, docs_incr))  # type: ignore[arg-type]
            incremental.b.append(_timed(raw.backup))  # type: ignore[union-attr]
        else:
            incremental.b.append(_timed(raw.backup))  # type: ignore[union-attr]
            incremental.a.append(_drctl_backup(env, docs_incr))  # type: ignore[arg-type]
    rows = _rows(fx, archive, first, incremental, docs_first, docs_incr, new_bytes, raws[-1])
    _bounds(rows, docs_first, docs_incr, [r.cpu[0] for r in raws], raws[-1].cpu[1:], archive)
    rows[0].notes.append(gap_breakdown(docs_first, [r.split[0] for r in raws]))
    rows[1].notes.append(gap_breakdown(docs_incr, raws[-1].split[1:]))
    for row, docs, raw_cpu in (
        (rows[0], docs_first, [r.cpu[0] for r in raws]),
        (rows[1], docs_incr, raws[-1].cpu[1:]),
    ):
        row.notes.append(
            f"CPU seconds per backup (all processes): drctl {median([d['cpu_s'] for d in docs]):.1f}"
            f" s, raw {median(raw_cpu):.1f} s; on {os.cpu_count()} cores drctl's work cannot "
            f"take less than {median([d['cpu_s'] for d in docs]) / (os.cpu_count() or 1):.1f} s"
        )
    _profile_misses(fx, rows, table)
    for folder in ("drctl_folder", "raw_folder"):
        shutil.rmtree(current[folder], ignore_errors=True)  # type: ignore[arg-type]
    return rows


def _timed(fn) -> float:
    with stopwatch() as elapsed:
        fn()
    return elapsed()


def _drctl_backup(env: DrctlEnv, docs: list[dict]) -> float:
    cpu = children_cpu()
    with stopwatch() as elapsed:
        doc = env.cli_json("backup", "run", "--node", "primary")
    assert doc["state"] == "succeeded", doc
    doc["wall_s"] = elapsed()
    doc["cpu_s"] = children_cpu() - cpu  # drctl's process, restic and pg_dump
    docs.append(doc)
    return doc["wall_s"]


def gap_breakdown(docs: list[dict], splits: list[tuple[float, float]]) -> str:
    """Where drctl's extra seconds go, against the raw run of the same repetition."""
    parts: dict[str, list[float]] = {}
    for doc, (pg_s, restic_s) in zip(docs, splits, strict=False):
        ph = doc["phases"]
        found = {
            "total": doc["wall_s"] - pg_s - restic_s,
            "outside": doc["wall_s"] - doc["duration_s"],
            "index": ph.get("index_copy_s", 0.0) - pg_s,
            "snapshot": ph.get("snapshot_s", 0.0) - restic_s,
            "record": sum(ph.get(k, 0.0) for k in ("plan_s", "modified_s", "record_s")),
        }
        for key, value in found.items():
            parts.setdefault(key, []).append(value)
    m = {key: median(values) for key, values in parts.items()}
    return (
        f"gap to raw (median) {m['total']:+.2f} s = process start-up, catalog and the "
        f"audit-anchor record outside the backup {m['outside']:+.2f} s; index copy beyond "
        f"pg_dump (restic record of the dump, pg_restore --list, index read) "
        f"{m['index']:+.2f} s; storage snapshot beyond raw restic (per-file -vv output, the "
        f"integrity pass alongside) {m['snapshot']:+.2f} s; manifest record, plan and "
        f"catalog {m['record']:+.2f} s"
    )


def _rows(
    fx, archive, first: Pairs, incr: Pairs, docs_first, docs_incr, new_bytes, raw: RawBackup
) -> list[Row]:
    gib = archive.bytes / 2**30
    files = len(archive.paths)
    data = (
        f"{len(archive.studies)} CT studies, {files} instances (512x512, ~"
        f"{archive.bytes / files / 1000:.0f} kB each), {gib:.2f} GiB on a "
        f"PostgreSQL-indexed Orthanc; incremental: +{fx.sizes.new_share:.0%} "
        f"({median(new_bytes) / 2**20:.0f} MiB) before each; local repositories"
    )
    phases_first = _median_phases(docs_first)
    phases_incr = _median_phases(docs_incr)
    b2 = ceiling_row(
        "B2",
        "backup run, first (PostgreSQL index)",
        first,
        "pg_dump + restic backup",
        1.15,
        data=data,
        samples={"drctl s": first.a, "raw s": first.b},
    )
    b2.notes.append("drctl phases (median s): " + _phase_text(phases_first))
    b2i = ceiling_row(
        "B2i",
        "backup run, incremental (1% new)",
        incr,
        "pg_dump + restic backup",
        1.25,
        data=data,
        samples={"drctl s": incr.a, "raw s": incr.b},
    )
    b2i.notes.append("drctl phases (median s): " + _phase_text(phases_incr))
    work_first = [_manifest_work(d) for d in docs_first]
    work_incr = [_manifest_work(d) for d in docs_incr]
    b3 = ceiling_row(
        "B3",
        "manifest + integrity work, incremental vs first",
        Pairs(a=work_incr, b=work_first),
        "first backup",
        0.1,
        digits=3,
        data=data,
        samples={"incremental s": work_incr, "first s": work_first},
    )
    if not b3.met:
        b3.extra["bound"] = (
            "the parts of the manifest work that do not shrink with the change: the study "
            "summaries read from the index (one set-based query over every study) and the "
            "catalog transaction; on a tiny archive they are most of the first backup's work."
        )
    b3.notes.append(
        "work = "
        + " + ".join(k.removesuffix("_s") for k in MANIFEST_PHASES)
        + " (the integrity pass runs alongside restic's snapshot; its wall time "
        "counts here)"
    )
    b3.notes.append(
        f"rows read: {median([d['manifest']['rows_read'] for d in docs_incr]):.0f}"
        f" incremental vs {median([d['manifest']['rows_read'] for d in docs_first]):.0f}"
        f" first; files read {median([d['manifest']['files_read'] for d in docs_incr]):.0f}"
        f" vs {median([d['manifest']['files_read'] for d in docs_first]):.0f}"
    )
    restic_first = [float(x["total_duration"]) for x in raw.summaries[:1]]
    b2.extra.update(
        {
            "bytes": archive.bytes,
            "files": files,
            "studies": len(archive.studies),
            "raw_first_s": median(first.b),
            "drctl_first_s": median(first.a),
            "raw_incr_s": median(incr.b),
            "drctl_incr_s": median(incr.a),
            "new_bytes": median(new_bytes),
            "new_files": median([d["files_new"] for d in docs_incr]),
            "phases_first": phases_first,
            "phases_incr": phases_incr,
            "restic_summary_first_s": restic_first[0] if restic_first else None,
            "restic_summary_incr_s": median(
                [float(x["total_duration"]) for x in raw.summaries[1:]]
            ),
            "pg_dump_s": median([x[0] for x in raw.split]),
        }
    )
    return [b2, b2i, b3]


def _bounds(rows, docs_first, docs_incr, raw_cpu_first, raw_cpu_incr, archive) -> None:
    """What bounds each missed B2 target, with this run's numbers."""
    first, incr = rows[0], rows[1]
    cores = os.cpu_count() or 1
    gib = archive.bytes / 2**30
    ph = _median_phases(docs_first)
    cpu_first = median([d["cpu_s"] for d in docs_first])
    if not first.met:
        first.extra["bound"] = (
            f"CPU. drctl reads every new byte once more than restic: MD5 against the index "
            f"(Orthanc's checksum at reception) and the content digest for the drill, "
            f"{ph.get('integrity_cpu_s', 0.0):.1f} CPU-s for {gib:.2f} GiB, run by two "
            f"workers alongside restic's snapshot. All processes of a drctl backup used "
            f"{cpu_first:.1f} CPU-s against the raw run's {median(raw_cpu_first):.1f}: on "
            f"{cores} cores drctl cannot take less than {cpu_first / cores:.1f} s, nor the "
            f"raw run less than {median(raw_cpu_first) / cores:.1f} s, so the first-backup "
            "ratio on this machine is bound by about the ratio of CPU-seconds; with more "
            "cores than restic uses, the pass runs beside it. Then fixed costs: three more "
            "restic invocations than the raw run (index-copy record, manifest record, audit "
            "anchor), each deriving the repository key (~0.5 CPU-s) and loading the "
            "repository index, and drctl's process start-up (see the gap breakdown)."
        )
    if not incr.met:
        incr.extra["bound"] = (
            f"fixed costs against a {median([d['bytes_added'] for d in docs_incr]) / 2**20:.0f}"
            f" MiB increment: the raw run is one pg_dump and one restic invocation "
            f"({median(raw_cpu_incr):.1f} CPU-s); drctl adds three restic invocations (each "
            "deriving the key and loading the repository index), pg_restore --list of the "
            "dump, its own start-up and catalog transaction "
            f"({median([d['cpu_s'] for d in docs_incr]):.1f} CPU-s in all). Its "
            "manifest and integrity work on the 1% is small (B3). The gap is seconds, "
            "not a share: at 1% of 50 TB (500 GB) the same seconds vanish in restic's hours."
        )


def _median_phases(docs: list[dict]) -> dict[str, float]:
    keys = sorted({k for d in docs for k in d.get("phases", {})})
    return {k: median([float(d["phases"].get(k, 0.0)) for d in docs]) for k in keys}


def _phase_text(phases: dict[str, float]) -> str:
    order = [
        "index_copy_s",
        "manifest_read_s",
        "plan_s",
        "snapshot_s",
        "integrity_s",
        "integrity_cpu_s",
        "modified_s",
        "manifest_record_s",
        "catalog_s",
        "record_s",
    ]
    return ", ".join(f"{k.removesuffix('_s')} {phases[k]:.2f}" for k in order if k in phases)


def _profile_misses(fx: Fixtures, rows: list[Row], table: dict) -> None:
    """One more (unmeasured) drctl backup in-process under cProfile, with every child
    process timed, for each B2 row that missed its target."""
    first, incr = rows[0], rows[1]
    if not first.met:
        env = fx.drctl("b2-profile", {"primary": table})
        first.profile = _profile(env)
        shutil.rmtree(env.root.parent, ignore_errors=True)
    if not incr.met:
        env = fx.drctl("b2-profile-incr", {"primary": table})
        env.cli_json("backup", "run", "--node", "primary")
        fx.more_ct(90)
        incr.profile = _profile(env)
        shutil.rmtree(env.root.parent, ignore_errors=True)


def _profile(env: DrctlEnv) -> str:
    ctx = env.context()
    try:
        with subprocess_log() as calls:
            result, text = profiled(lambda: run_backup(ctx, "primary"))
    finally:
        ctx.catalog.close()
    children = "\n".join(f"  {head:<28} {seconds:6.2f} s" for head, seconds in calls)
    return f"in-process run: {result.duration_s:.2f} s; child processes:\n{children}\n\n" + text
