"""Issue 8 acceptance (single-study recovery): a study deleted on the primary comes back
with the same SOP Instance UIDs and identical stored bytes; --at picks the snapshot of the
right time; --patient-id finds a patient's studies through the keyed hash."""

from __future__ import annotations

from datetime import UTC, datetime

import pydicom
from pydicom.uid import generate_uid

from tests.support.scenarios import env_for, primary, study_public_id


def _stored(node, archive, uid) -> dict[str, bytes]:
    instances = node.rest.get(f"/studies/{study_public_id(archive, uid)}/instances")
    return {i["MainDicomTags"]["SOPInstanceUID"]: node.rest.instance_file(i["ID"])
            for i in instances}


def _extra_series(archive, uid, folder):
    """Two new instances in a new series of an existing study."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(archive.instances_of(uid)[0].path)
    series = generate_uid()
    paths = []
    for n in range(2):
        template.SeriesInstanceUID = series
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / f"extra{n}.dcm"
        template.save_as(path)
        paths.append(path)
    return paths


def test_deleted_study_comes_back_identical_and_at_picks_the_right_snapshot(tmp_path):
    with primary(tmp_path, studies=5, compression=True) as (node, archive):
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")},
                      node={"vanished_alarm": 0.5})
        env.cli_json("repo", "init")
        victim = sorted(archive.study_uids)[2]
        env.cli_json("backup", "run")
        between = datetime.now(UTC).isoformat()
        node.load(_extra_series(archive, victim, tmp_path / "extra"))
        env.cli_json("backup", "run")
        original = _stored(node, archive, victim)
        assert len(original) == 6

        node.rest.delete("studies", study_public_id(archive, victim))
        plan = env.cli_json("restore", "study", victim, "--to", "primary", "--dry-run")
        assert plan["studies"][0]["instances"] == 6 and plan["run_id"] is None
        assert _stored_count(node, archive, victim) == 0  # a dry run sends nothing

        result = env.cli_json("restore", "study", victim, "--to", "primary")
        assert result["state"] == "succeeded" and result["studies"][0]["verified"]
        assert _stored(node, archive, victim) == original  # same UIDs, identical bytes

        node.rest.delete("studies", study_public_id(archive, victim))
        older = env.cli_json("restore", "study", victim, "--to", "primary", "--at", between)
        assert older["studies"][0]["instances"] == 4
        assert set(_stored(node, archive, victim)) < set(original)


def _stored_count(node, archive, uid) -> int:
    return sum(1 for s in node.rest.get("/studies") if s == study_public_id(archive, uid))


def test_patient_id_recovers_every_study_of_the_patient(tmp_path):
    with primary(tmp_path, studies=6) as (node, archive):
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")},
                      node={"vanished_alarm": 0.9})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        patient = archive.studies[0].patient_id
        theirs = {s.study_uid for s in archive.studies if s.patient_id == patient}
        assert len(theirs) >= 2  # the sample gives consecutive studies one patient
        for uid in theirs:
            node.rest.delete("studies", study_public_id(archive, uid))
        result = env.cli_json("restore", "study", "--patient-id", patient, "--to", "primary")
        assert {s["study_uid"] for s in result["studies"]} == theirs
        assert all(s["verified"] for s in result["studies"])
        assert patient not in str(result)


def test_unknown_study_is_a_clear_usage_error(tmp_path):
    with primary(tmp_path, studies=1) as (node, _archive):
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        proc = env.cli("restore", "study", "1.2.3.4.5", "--to", "primary", check_exit=2)
        assert "no snapshot" in proc.stderr and "1.2.3.4.5" in proc.stderr
