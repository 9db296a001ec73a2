"""RESULTS.md: the table, the environment, the data sizes, every sample, the notes, the
profiles of missed targets, and the projection to a 100,000-study, 50 TB archive."""

from __future__ import annotations

import time

from bench.fixtures import Sizes
from bench.harness import Row, fmt_s, fmt_samples

PROJECTED_STUDIES = 100_000
PROJECTED_BYTES = 50 * 10**12
DAILY_NEW_SHARE = 0.01  # as the incremental benchmark


def table(rows: list[Row]) -> str:
    lines = [
        "| id | what | drctl | reference | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(
            f"| {r.id} | {r.what} | {r.drctl} | {r.reference} | {r.ratio_text} "
            f"| {r.target} | {met} |"
        )
    return "\n".join(lines)


def render(
    rows: list[Row],
    *,
    env: dict,
    loads: list[tuple[str, str]],
    total_s: float,
    sizes: Sizes,
    quick: bool,
    only: str | None,
    failures: list[tuple[str, str]],
    setup_s: dict[str, float],
) -> str:
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    kind = "quick smoke run (small sizes: figures not meaningful)" if quick else "full run"
    out = [
        "# drctl benchmarks",
        "",
        f"Written by `make bench` (`python -m bench.run`) on {when}: {kind}"
        + (f", only {only}" if only else "")
        + f"; {total_s / 60:.1f} min in all.",
        "Each figure is the median of its repetitions; each ratio is the median of ratios "
        "of drctl (A) and the reference (B) measured next to each other, alternating which "
        'went first. Ratios are drctl / reference unless the target says "faster".',
        "",
        table(rows),
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        "- load average (1 / 5 / 15 min) at each step: "
        + "; ".join(f"{step} {value}" for step, value in loads),
        "",
    ]
    if failures:
        out += ["## Failed benchmarks", ""]
        for bench_id, trace in failures:
            out += [f"### {bench_id}", "", "```", trace.strip()[-3000:], "```", ""]
    out += ["## Per benchmark", ""]
    for r in rows:
        out += [f"### {r.id}: {r.what}", ""]
        if r.data:
            out.append(f"- data: {r.data}")
        for name, values in r.samples.items():
            out.append(
                f"- {name}: {fmt_samples(values, 's' if name.endswith(' s') or '/' in name else '')}"
            )
        for note in r.notes:
            out.append(f"- {note}")
        if "seconds" in r.extra:
            out.append(
                f"- benchmark wall time {r.extra['seconds']:.0f} s (with its share of "
                f"the setup); load average after it {r.extra.get('load', '?')}"
            )
        if r.profile:
            out += [
                "",
                "Profile of one more drctl run (cProfile, cumulative):",
                "",
                "```",
                r.profile.strip(),
                "```",
            ]
        out.append("")
    bounds = [r for r in rows if r.met is False]
    if bounds:
        out += ["## What bounds the missed targets", ""]
        for r in bounds:
            out.append(
                f"- **{r.id}** ({r.ratio_text} against {r.target}): "
                + r.extra.get("bound", "see its notes and profile above.")
            )
        out.append("")
    if setup_s:
        out += ["## Setup (not measured)", ""]
        out += [f"- {what}: {seconds:.0f} s" for what, seconds in setup_s.items()]
        out.append("")
    out += projection(rows)
    return "\n".join(out) + "\n"


def _row(rows: list[Row], bench_id: str) -> Row | None:
    return next((r for r in rows if r.id == bench_id), None)


def projection(rows: list[Row]) -> list[str]:
    """What a 100,000-study, 50 TB archive would cost, from the rates measured above.
    A projection: it assumes the rates stay linear at 100-1000x the measured sizes."""
    out = [
        "## Projection: 100,000 studies, 50 TB (a projection, not a measurement)",
        "",
        f"Linear extrapolation of this run's rates to {PROJECTED_STUDIES:,} studies and "
        f"{PROJECTED_BYTES / 1e12:.0f} TB (500 MB per study), with "
        f"{DAILY_NEW_SHARE:.0%} new per day as in B2i "
        f"({PROJECTED_STUDIES * DAILY_NEW_SHARE:,.0f} studies, "
        f"{PROJECTED_BYTES * DAILY_NEW_SHARE / 1e9:,.0f} GB). Real archives add effects "
        "this run cannot show (object-storage latency and bandwidth, restic's index "
        "memory at 50 TB, disks slower than this machine's page cache).",
        "",
    ]
    b1, b2, b4, b5, b7 = (_row(rows, i) for i in ("B1", "B2", "B4", "B5", "B7"))
    if b1 is not None and "per_study_s" in b1.extra:
        per_study = b1.extra["per_study_s"]
        naive = b1.extra["findscu_per_study_s"]
        out.append(
            f"- **study-level verification** (B1 rate {fmt_s(per_study)}/study): "
            f"{fmt_s(per_study * PROJECTED_STUDIES)} for {PROJECTED_STUDIES:,} studies "
            f"(one findscu per study: {naive * PROJECTED_STUDIES / 3600:.1f} h)."
        )
    if b2 is not None and "bytes" in b2.extra:
        out += _backup_projection(b2)
    if b4 is not None and b5 is not None and b7 is not None and "restore_s" in b4.extra:
        out += _drill_projection(b1, b4, b5, b7)
    if len(out) == 6:
        out.append("- (the benchmarks it needs did not run)")
    out.append("")
    return out


def _backup_projection(b2: Row) -> list[str]:
    x = b2.extra
    gb = x["bytes"] / 1e9
    new_gb = PROJECTED_BYTES * DAILY_NEW_SHARE / 1e9
    files_total = PROJECTED_BYTES / (x["bytes"] / x["files"])
    # restic's own durations (its summaries): new data per GB from the first backup; the
    # incremental's remainder, after its new data, is the walk over unchanged files
    restic_per_gb = (x["restic_summary_first_s"] or x["raw_first_s"]) / gb
    restic_incr = x["restic_summary_incr_s"]
    scan_per_file = max(0.0, restic_incr - restic_per_gb * x["new_bytes"] / 1e9) / x["files"]
    overhead = x["drctl_incr_s"] - x["raw_incr_s"]
    read_per_study = x["phases_incr"].get("manifest_read_s", 0.0) / x["studies"]
    integrity_per_gb = (
        x["phases_first"].get("integrity_cpu_s", x["phases_first"].get("integrity_s", 0.0)) / gb
    )
    restic_s = restic_per_gb * new_gb + scan_per_file * files_total
    drctl_s = restic_s + overhead + read_per_study * PROJECTED_STUDIES
    return [
        f"- **incremental backup** of {new_gb:,.0f} GB new, {files_total / 1e6:,.0f} M stored "
        f"files (at B2's {x['bytes'] / x['files'] / 1e3:.0f} kB per file): restic ≈ "
        f"{restic_per_gb:.1f} s/GB new × {new_gb:,.0f} GB + "
        f"{scan_per_file * 1e6:.0f} µs per unchanged file × {files_total / 1e6:,.0f} M ≈ "
        f"{restic_s / 3600:.1f} h, plus pg_dump of the index (B2: {x['pg_dump_s']:.1f} s for "
        f"{x['files']:,} instances; grows with the index, not measured at scale). drctl adds "
        f"its fixed cost measured in B2i ({overhead:.1f} s: start-up, three more restic "
        "invocations, each opening the repository and loading its index, which grows with "
        f"the repository) and its index read ({read_per_study * 1e3:.2f} ms/study × "
        f"{PROJECTED_STUDIES:,}): ≈ {drctl_s / 3600:.1f} h. Its integrity pass "
        f"({integrity_per_gb:.1f} s/GB in B2's first backup) runs alongside restic: "
        f"{integrity_per_gb * new_gb / 3600:.1f} h within the same window when restic leaves "
        "cores free.",
    ]


def _drill_projection(b1: Row | None, b4: Row, b5: Row, b7: Row) -> list[str]:
    x = b4.extra
    per_study = (
        b1.extra["per_study_s"]
        if b1 is not None and "per_study_s" in b1.extra
        else x["index_layer_s"] / x["studies"]
    )
    study_restore = b5.extra["restore_s"]
    served = b7.extra["per_instance_s"]
    sampled_studies, sampled_instances = 10, 50  # drill defaults
    index_s = per_study * PROJECTED_STUDIES
    partial = (
        x["check_s"]
        + sampled_studies * study_restore
        + x["start_s"]
        + index_s
        + sampled_instances * served
    )
    full_restore = x["restore_s"] / (x["bytes"] / 1e9) * PROJECTED_BYTES / 1e9
    return [
        f"- **partial drill** (defaults: {sampled_studies} studies restored, "
        f"{sampled_instances} instances fetched): repository check {fmt_s(x['check_s'])} "
        f"(its read subset grows with the repository) + {sampled_studies} × "
        f"{fmt_s(study_restore)} study restores (B5) + start {fmt_s(x['start_s'])} + "
        f"index check {fmt_s(index_s)} + {sampled_instances} × {fmt_s(served)} served "
        f"(B7) ≈ {fmt_s(partial)} before the index copy's own restore, which grows with "
        "the index. A full restore at B4's throughput would take "
        f"{full_restore / 3600:.0f} h (the partial drill projects this as its RTO).",
    ]
