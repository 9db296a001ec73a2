"""The drill's index, extra-study, instance and file checks against fakes and files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from drctl.dicom.errors import DicomTruncated
from drctl.dicom.records import InstanceRecord, StudyRecord
from drctl.drill.checks import extra_layer, file_layer, index_layer, instance_layer
from drctl.errors import DicomAborted


@dataclass(frozen=True)
class Study:
    study_uid: str
    series: int = 2
    instances: int = 4
    bytes: int = 0


@dataclass(frozen=True)
class Instance:
    sop_uid: str
    study_uid: str
    path: str
    size: int
    md5: str | None
    series_uid: str = "1.9"
    sop_class: str | None = None
    transfer_syntax: str | None = None
    digest: str | None = None


def record(uid: str, series: int | None = 2, instances: int | None = 4) -> StudyRecord:
    return StudyRecord(uid, "20240101", ("CT",), series, instances)


class FakeSession:
    """Answers as a node whose index holds ``records``; counts the queries."""

    def __init__(
        self,
        records: list[StudyRecord],
        *,
        cap_wildcard: bool = False,
        instances: dict | None = None,
        fail: Exception | None = None,
    ):
        self.records = {r.study_uid: r for r in records}
        self.cap_wildcard = cap_wildcard
        self.instances = instances or {}
        self.fail = fail
        self.is_open = True
        self.queries: list = []

    def find_studies_by_uid(self, uids):
        self.queries.append(("uids", len(uids)))
        if self.fail:
            raise self.fail
        return {u: self.records[u] for u in uids if u in self.records}

    def find_studies(self, date_range=None):
        self.queries.append(("studies", date_range))
        if date_range is None and self.cap_wildcard:
            raise DicomTruncated("capped")
        return [r for r in self.records.values() if date_range is None or r.study_date]

    def find_instances(self, study_uid):
        if study_uid == "1.2.3.4":
            self.is_open = False
            raise DicomAborted("gone")
        return [
            InstanceRecord(study_uid, "1.9", uid, None, None)
            for uid in self.instances.get(study_uid, [])
        ]


def test_index_layer_finds_missing_studies_and_wrong_counts() -> None:
    studies = [Study("1.2.3.1"), Study("1.2.3.2"), Study("1.2.3.3"), Study("1.2.3.5")]
    session = FakeSession(
        [record("1.2.3.1"), record("1.2.3.2", series=1), record("1.2.3.5", instances=None)]
    )
    result = index_layer(session, studies)
    kinds = {(f.kind, f.study_uid) for f in result.findings}
    assert kinds == {
        ("count_mismatch", "1.2.3.2"),
        ("study_missing", "1.2.3.3"),
        ("count_mismatch", "1.2.3.5"),
    }
    assert result.proven == {"1.2.3.1"}
    assert session.queries == [("uids", 4)]  # one call: batching is the session's
    detail = next(f.detail for f in result.findings if f.study_uid == "1.2.3.5")
    assert "no count of instances" in detail


def test_an_index_check_that_cannot_finish_proves_nothing() -> None:
    session = FakeSession([record("1.2.3.1")], fail=DicomTruncated("single study truncated"))
    result = index_layer(session, [Study("1.2.3.1")])
    assert [f.kind for f in result.findings] == ["verification_incomplete"]
    assert result.proven == set()


def test_extra_studies_are_informational_and_capped_nodes_are_listed_by_date() -> None:
    session = FakeSession([record("1.2.3.1"), record("1.2.3.8")], cap_wildcard=True)
    result = extra_layer(session, {"1.2.3.1"})
    assert [(f.kind, f.study_uid) for f in result.findings] == [("extra_study", "1.2.3.8")]
    assert not any(f.failing for f in result.findings)
    assert session.queries == [("studies", None), ("studies", "19000101-")]
    assert "without a StudyDate" in result.notes[0]


def test_instance_layer_names_missing_instances_and_stops_on_a_dead_association() -> None:
    session = FakeSession([], instances={"1.2.3.1": ["a", "b"], "1.2.3.2": ["c"]})
    sampled = {
        "1.2.3.1": [Instance(u, "1.2.3.1", u, 1, None) for u in ("a", "b", "z")],
        "1.2.3.2": [Instance("c", "1.2.3.2", "c", 1, None)],
        "1.2.3.4": [Instance("d", "1.2.3.4", "d", 1, None)],
        "1.2.3.6": [Instance("e", "1.2.3.6", "e", 1, None)],
    }
    result = instance_layer(session, sampled)
    kinds = [(f.kind, f.study_uid) for f in result.findings]
    assert ("instance_missing", "1.2.3.1") in kinds
    assert ("verification_incomplete", "1.2.3.4") in kinds
    assert result.proven == {"1.2.3.2"}  # 1.2.3.6 never asked: the association was gone
    assert "z (not listed" in next(f.detail for f in result.findings if f.study_uid == "1.2.3.1")


def test_file_layer_stats_everything_and_hashes_the_sample(tmp_path: Path) -> None:
    def stored(name: str, data: bytes, *, md5: str | None = None, study="1.2.3.1") -> Instance:
        (tmp_path / name).write_bytes(data)
        return Instance(name, study, name, len(data), md5 or hashlib.md5(data).hexdigest())

    good = stored("good", b"x" * 100)
    altered = stored("altered", b"y" * 50, md5="0" * 32, study="1.2.3.2")
    unsampled = stored("unsampled", b"z" * 10, md5="0" * 32, study="1.2.3.3")
    short = Instance("short", "1.2.3.4", "short", 999, None)
    (tmp_path / "short").write_bytes(b"abc")
    gone = Instance("gone", "1.2.3.5", "gone", 1, None)
    sample = frozenset({("good", "good"), ("altered", "altered")})
    result = file_layer(
        tmp_path, [good, altered, unsampled, short, gone], hash_all=False, hash_keys=sample
    )
    kinds = {(f.kind, f.study_uid) for f in result.findings}
    assert kinds == {
        ("instance_corrupt", "1.2.3.2"),
        ("instance_corrupt", "1.2.3.4"),
        ("instance_missing", "1.2.3.5"),
    }
    assert result.proven == {"1.2.3.1", "1.2.3.3"}  # 1.2.3.3: size right, not hashed
    assert result.extra["hashed"] == 2
    everything = file_layer(tmp_path, [unsampled], hash_all=True, hash_keys=frozenset())
    assert [f.kind for f in everything.findings] == ["instance_corrupt"]
