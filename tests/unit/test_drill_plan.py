"""Drill planning, findings, phases and RTO/RPO: pure rules."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from drctl.drill.findings import (
    EXTRA_STUDY,
    INSTANCE_MISSING,
    STUDY_MISSING,
    UIDS_NAMED,
    Finding,
    InstanceProblem,
    failing_studies,
    per_study,
    verdict,
)
from drctl.drill.phases import PhaseClock, projected_rto, rpo, target_findings
from drctl.drill.plan import choose_scope, make_plan


@dataclass(frozen=True)
class Study:
    study_uid: str
    series: int = 1
    instances: int = 3
    bytes: int = 0


@dataclass(frozen=True)
class Instance:
    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class: str | None = "1.2.840.10008.5.1.4.1.1.2"
    transfer_syntax: str | None = "1.2.840.10008.1.2.1"
    path: str = ""
    size: int = 10
    md5: str | None = None
    digest: str | None = None


STUDIES = [Study(f"1.2.3.{n}") for n in range(1, 41)]


def instances_of(uids):
    asked = set(uids)
    instances_of.calls.append(sorted(asked))
    return [
        Instance(f"{s.study_uid}.{k}", f"{s.study_uid}.9", s.study_uid, path=f"{s.study_uid}/{k}")
        for s in STUDIES
        if s.study_uid in asked
        for k in range(s.instances)
    ]


instances_of.calls = []


@pytest.mark.parametrize(
    ("requested", "configured", "size", "expected"),
    [
        ("full", "partial", 10**12, "full"),
        ("partial", "full", 1, "partial"),
        (None, "partial", 1, "partial"),
        (None, "auto", 100, "full"),
        (None, "auto", 101, "partial"),
    ],
)
def test_choose_scope(requested, configured, size, expected) -> None:
    scope, why = choose_scope(requested, configured, size, 100)
    assert scope == expected
    assert why


def plan(**kw):
    args = {
        "scope": "full",
        "scope_reason": "test",
        "sample_studies": 5,
        "sample_instances": 12,
        "verify_all": False,
        "seed": 42,
        **kw,
    }
    return make_plan(STUDIES, instances_of, **args)


def test_plans_are_reproducible_from_their_seed() -> None:
    assert plan() == plan()
    assert plan(seed=43).sampled_studies != plan().sampled_studies


def test_every_sampled_study_is_served_and_the_count_is_met() -> None:
    p = plan()
    assert len(p.sampled_studies) == 5
    served_studies = {i.study_uid for i in p.served}
    assert set(p.sampled_studies) <= served_studies
    assert len(p.served) == 12
    assert len({(i.sop_uid, i.path) for i in p.served}) == 12  # no instance twice
    assert len(served_studies) > 5  # a full drill also samples other studies


def test_sampled_studies_are_served_even_beyond_the_instance_count() -> None:
    p = plan(sample_studies=8, sample_instances=3)
    assert {i.study_uid for i in p.served} == set(p.sampled_studies)


def test_partial_drills_sample_restored_studies_only() -> None:
    p = plan(scope="partial")
    assert {i.study_uid for i in p.served} <= set(p.sampled_studies)
    assert p.restored(p.sampled_studies[0])
    assert not p.restored(
        next(s.study_uid for s in STUDIES if s.study_uid not in p.sampled_studies)
    )


def test_at_least_one_study_is_sampled_and_reading_stays_small() -> None:
    instances_of.calls.clear()
    p = plan(sample_studies=0, sample_instances=0)
    assert len(p.sampled_studies) == 1 and len(p.served) == 1
    assert sum(len(c) for c in instances_of.calls) == 1  # only that study was read


def test_verify_all_needs_no_sample_list() -> None:
    p = plan(verify_all=True)
    assert p.verify_all and p.served == ()


# --- findings ---------------------------------------------------------------------------


def test_instance_problems_are_grouped_per_study_naming_a_few() -> None:
    problems = [
        InstanceProblem("1.2.3.1", f"1.2.3.1.{k}", "stored file missing")
        for k in range(UIDS_NAMED + 2)
    ]
    problems.append(InstanceProblem("1.2.3.2", "1.2.3.2.0", "stored file missing"))
    found = per_study(INSTANCE_MISSING, problems, layer="files", checked={"1.2.3.1": 9})
    assert [f.study_uid for f in found] == ["1.2.3.1", "1.2.3.2"]
    assert found[0].detail.startswith("7 of 9 instances: 1.2.3.1.0 (stored file missing)")
    assert found[0].detail.endswith("and 2 more")
    assert found[1].detail.startswith("1 instance: ")


def test_only_extra_studies_do_not_fail_a_drill() -> None:
    extra = Finding(EXTRA_STUDY, "1.2.3.9", "not in the manifest")
    missing = Finding(STUDY_MISSING, "1.2.3.1", "not returned")
    assert verdict([]) == "passed"
    assert verdict([extra]) == "passed"
    assert verdict([extra, missing]) == "failed"
    assert failing_studies([extra, missing]) == {"1.2.3.1"}
    with pytest.raises(ValueError):
        Finding("study_gone", None, "")


# --- phases, RTO, RPO ---------------------------------------------------------------------


def test_phase_clock_times_phases_and_marks_failures() -> None:
    clock = PhaseClock()
    with clock.phase("check") as detail:
        detail["subset"] = "1/28"
        time.sleep(0.01)
    with pytest.raises(RuntimeError), clock.phase("restore"):
        raise RuntimeError("boom")
    with clock.phase("start"):
        pass
    clock.fail("start")
    phases = clock.to_json()
    assert phases["check"]["ok"] is True and phases["check"]["subset"] == "1/28"
    assert phases["check"]["duration_s"] >= 0.01
    assert phases["restore"]["ok"] is False and phases["restore"]["duration_s"] is not None
    assert phases["start"]["ok"] is False
    assert clock.elapsed() >= clock.duration("check")


def test_projected_rto_scales_the_restore_to_the_archive() -> None:
    # 10 s measured, of which 2 s restoring 1 MB: 100 MB take 200 s
    assert projected_rto(10.0, 2.0, 10**6, 10**8) == pytest.approx(208.0)
    assert projected_rto(10.0, 0.0, 0, 10**8) is None


def test_rpo_against_the_primary_or_now() -> None:
    pair = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    now = pair + timedelta(hours=5)
    assert rpo(pair, pair + timedelta(minutes=30), now) == (1800.0, "primary")
    assert rpo(pair, pair - timedelta(minutes=1), now) == (0.0, "primary")  # nothing newer
    assert rpo(pair, None, now) == (5 * 3600.0, "now")


def test_target_findings() -> None:
    found = target_findings(
        rto_s=100, rto_projected=True, max_rto=50, rpo_s=10, rpo_basis="now", max_rpo=60
    )
    assert [f.kind for f in found] == ["rto_exceeded"]
    assert "projected RTO" in found[0].detail
    found = target_findings(
        rto_s=None, rto_projected=False, max_rto=50, rpo_s=61, rpo_basis="now", max_rpo=60
    )
    assert [f.kind for f in found] == ["rpo_exceeded"]
    assert "did not answer" in found[0].detail
