"""B5: restoring one study (:func:`drctl.actions.restore.run_restore`: restic restore of
its files only, size and MD5 checked against the manifest, C-STORE to a node, C-FIND
there) from a 10,000-study snapshot against the same from a 100-study snapshot. Each
snapshot lives in a repository of its own, as a small and a large archive would; the
study restored is the same size in both (one instance), and it is deleted from the
target node again between repetitions (not measured)."""

from __future__ import annotations

from bench.fixtures import Fixtures
from bench.harness import Row, ceiling_row, interleaved, median, profiled, subprocess_log
from drctl.actions.restore import run_restore
from tests.support.drctl_env import DrctlEnv


def _restore(env: DrctlEnv, study_uid: str, target) -> float:
    ctx = env.context()
    try:
        result = run_restore(ctx, [study_uid], "target")
    finally:
        ctx.catalog.close()
    assert result.state == "succeeded", result.to_json()
    for hit in target.rest.post("/tools/lookup", study_uid.encode()) or []:
        if hit.get("Type") == "Study":
            target.rest.delete("studies", hit["ID"])
    return result.duration_s


def run_b5(fx: Fixtures) -> list[Row]:
    _, large_archive, large_env = fx.large
    _, small_archive, small_env = fx.small
    target = fx.restore_target
    large_uid = large_archive.studies[len(large_archive.studies) // 2].study_uid
    small_uid = small_archive.studies[len(small_archive.studies) // 2].study_uid
    pairs = interleaved(
        lambda _r: _restore(large_env, large_uid, target),
        lambda _r: _restore(small_env, small_uid, target),
        fx.sizes.reps_slow,
    )
    large_n, small_n = len(large_archive.studies), len(small_archive.studies)
    row = ceiling_row(
        "B5",
        f"single-study restore, {large_n:,}-study vs {small_n}-study snapshot",
        pairs,
        f"{small_n}-study snapshot",
        2,
        data=(
            f"snapshots of {large_n:,} and {small_n} studies (one instance each) in "
            "separate local repositories; restored into an empty Orthanc"
        ),
        samples={"large s": pairs.a, "small s": pairs.b},
    )
    with subprocess_log() as calls:
        _, text = profiled(lambda: _restore(large_env, large_uid, target), top=12)
    row.notes.append(
        "child processes of one restore from the large snapshot: "
        + ", ".join(f"{head} {seconds:.2f}s" for head, seconds in calls)
    )
    if not row.met:
        row.profile = text
    row.extra["restore_s"] = median(pairs.a)
    return [row]
