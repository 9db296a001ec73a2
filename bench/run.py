"""``python -m bench.run``: run the benchmarks and write the results.

    python -m bench.run                 # everything, full sizes -> bench/RESULTS.md
    python -m bench.run --only B1,B7    # some of them -> bench/work/RESULTS-B1-B7.md
    python -m bench.run --quick         # small sizes, a smoke run -> bench/work/...

Work files live in bench/work/run-<pid> (removed at the end, with every process the
run started). Exit 0 when the benchmarks ran, whatever the figures; 1 when one failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.fixtures import FULL, QUICK, Fixtures
from bench.harness import ROOT, Row, environment, load_average

BENCH_DIR = ROOT / "bench"
log = logging.getLogger("bench")


def _registry() -> dict[str, Callable[[Fixtures], list[Row]]]:
    from bench import b_backup, b_drill, b_restore, b_scheduler, b_verify

    return {
        "B1": b_verify.run_b1,  # B1 and B1b
        "B2": b_backup.run_b2,  # B2 and B3
        "B4": b_drill.run_b4,
        "B5": b_restore.run_b5,
        "B6": b_scheduler.run_alone,  # normally started first and finished last
        "B7": b_verify.run_b7,
    }


ALIASES = {"B1B": "B1", "B3": "B2"}
ORDER = ["B6", "B1", "B7", "B5", "B4", "B2"]  # B6's idle daemon runs alongside the others


def selected(only: str | None) -> list[str]:
    if not only:
        return list(ORDER)
    wanted = {ALIASES.get(x.strip().upper(), x.strip().upper()) for x in only.split(",")}
    unknown = wanted - set(ORDER)
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(sorted(unknown))} "
            f"(known: B1, B1b, B2, B3, B4, B5, B6, B7)"
        )
    return [b for b in ORDER if b in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", help="comma-separated ids, e.g. B1,B7 (B1b runs with B1, B3 with B2)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--out", type=Path, help="where to write the results (markdown)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("drctl", "pynetdicom", "sqlalchemy", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ids = selected(args.only)
    complete = not args.only and not args.quick
    out = args.out or (
        BENCH_DIR / "RESULTS.md"
        if complete
        else BENCH_DIR / "work" / f"RESULTS-{'quick-' if args.quick else ''}"
        f"{'-'.join(ids) if args.only else 'all'}.md"
    )
    sizes = QUICK if args.quick else FULL
    work = BENCH_DIR / "work" / f"run-{os.getpid()}"
    started = time.monotonic()
    loads = [("start", load_average())]
    env = environment()
    fixtures = Fixtures(work, sizes)
    rows: list[Row] = []
    failures: list[tuple[str, str]] = []
    registry = _registry()
    try:
        pending_b6 = None
        if "B6" in ids:
            from bench import b_scheduler

            pending_b6 = b_scheduler.start(fixtures)
        for bench_id in ids:
            if bench_id == "B6":
                continue
            log.info("--- %s (load %s)", bench_id, load_average())
            t0 = time.monotonic()
            try:
                new = registry[bench_id](fixtures)
            except Exception:
                failures.append((bench_id, traceback.format_exc()))
                log.error("%s failed:\n%s", bench_id, failures[-1][1])
                continue
            for row in new:
                row.extra["seconds"] = round(time.monotonic() - t0, 1)
                row.extra["load"] = load_average()
            rows += new
            loads.append((bench_id, load_average()))
        if pending_b6 is not None:
            from bench import b_scheduler

            try:
                rows += b_scheduler.finish(pending_b6)
            except Exception:
                failures.append(("B6", traceback.format_exc()))
                log.error("B6 failed:\n%s", failures[-1][1])
    finally:
        fixtures.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    loads.append(("end", load_average()))
    total = time.monotonic() - started
    text = report.render(
        rows,
        env=env,
        loads=loads,
        total_s=total,
        sizes=sizes,
        quick=args.quick,
        only=args.only,
        failures=failures,
        setup_s=fixtures.setup_s,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(report.table(rows))
    print(f"\n{len(rows)} rows in {total / 60:.1f} min; written to {out}")
    for bench_id, trace in failures:
        print(f"\n{bench_id} FAILED:\n{trace}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
