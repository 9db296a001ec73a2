"""The sample archive generator: determinism, UIDs, synthetic patients, no template PHI."""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import pydicom
import pytest

from drctl.pacs.orthanc.load import UNCOMPRESSED
from drctl.sample import TEMPLATES, generate, more

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Names found in pydicom's templates: none may survive in a generated file.
TEMPLATE_NAMES = [b"CompressedSamples", b"Moriarty", b"Lestrade", b"Last Name", b"Test^S R"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sample"), studies=40, seed=3)


def _digest(paths):
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()


def test_counts_match_the_files_written(archive):
    assert len(archive.studies) == 40
    assert len(archive.instances) == 40 * 2 * 3
    assert all(path.is_file() for path in archive.paths)
    for study in archive.studies:
        assert study.series_count == 2 and study.instance_count == 6
        assert {p.parent for p in (i.path for i in archive.instances_of(study.study_uid))} == {
            study.folder
        }


def test_files_carry_the_recorded_identifiers(archive):
    for item in archive.instances[::7]:
        ds = pydicom.dcmread(item.path)
        assert ds.StudyInstanceUID == item.study_uid
        assert ds.SeriesInstanceUID == item.series_uid
        assert ds.SOPInstanceUID == item.sop_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == item.transfer_syntax_uid
        assert str(ds.PatientName) == item.patient_name
        assert ds.PatientID == item.patient_id
        assert ds.AccessionNumber == item.accession_number
        assert ds.get("StudyDate") == item.study_date
        assert ds.InstanceNumber == int(item.path.stem.split("-i")[1])
        assert "PixelData" in ds or "ContentSequence" in ds  # the payload survived


def test_uids_are_unique_and_valid(archive):
    sops = [i.sop_uid for i in archive.instances]
    series = {i.series_uid for i in archive.instances}
    assert len(set(sops)) == len(sops)
    assert len(series) == 80
    for uid in [*sops, *series, *archive.study_uids]:
        assert len(uid) <= 64 and uid.startswith("2.25.")


def test_same_seed_same_bytes_other_seed_other_uids(tmp_path):
    first = generate(tmp_path / "a", studies=5, seed=11)
    again = generate(tmp_path / "b", studies=5, seed=11)
    other = generate(tmp_path / "c", studies=5, seed=12)
    assert _digest(first.paths) == _digest(again.paths)
    assert [i.sop_uid for i in first.instances] == [i.sop_uid for i in again.instances]
    assert first.study_uids.isdisjoint(other.study_uids)
    assert first.patient_ids.isdisjoint(other.patient_ids)


def test_synthetic_patients_and_no_template_names(archive):
    for study in archive.studies:
        assert study.patient_id.startswith("PID") and study.patient_id[3:].isdigit()
        family, given, number = study.patient_name.split("^")
        assert int(number) == int(study.patient_id[3:])
    assert len(archive.patient_ids) < len(archive.studies)  # patients have several studies
    for path in archive.paths:
        data = path.read_bytes()
        assert not any(name in data for name in TEMPLATE_NAMES), path


def test_some_studies_have_no_date(archive):
    undated = [s for s in archive.studies if s.study_date is None]
    assert 1 <= len(undated) <= 8
    for study in undated:
        for item in archive.instances_of(study.study_uid):
            ds = pydicom.dcmread(item.path, stop_before_pixels=True)
            assert "StudyDate" not in ds and "SeriesDate" not in ds
    none = generate(archive.root.parent / "nodates", studies=10, missing_date_share=0.0)
    assert all(s.study_date for s in none.studies)


def test_modalities_and_transfer_syntaxes_vary(tmp_path):
    big = generate(tmp_path, studies=60, series_per_study=3, instances_per_series=1)
    syntaxes = Counter(i.transfer_syntax_uid for i in big.instances)
    assert IMPLICIT_LE in syntaxes and EXPLICIT_LE in syntaxes
    assert sum(n for ts, n in syntaxes.items() if ts not in UNCOMPRESSED) > 0
    assert {"CT", "MR", "NM", "OT", "SR", "US"} <= {i.modality for i in big.instances}
    assert {i.template for i in big.instances} == {t.filename for t in TEMPLATES}


def test_more_continues_with_new_studies(archive, tmp_path):
    added = more(archive, 3, out_dir=tmp_path)
    assert [s.number for s in added.studies] == [41, 42, 43]
    assert added.study_uids.isdisjoint(archive.study_uids)
    chained = more(added, 2, out_dir=tmp_path)
    assert [s.number for s in chained.studies] == [44, 45]
    whole = archive + added + chained
    assert len(whole.studies) == 45 and whole.next_study_number == 46


def test_thousands_of_instances_in_seconds(tmp_path):
    generate(tmp_path / "warm", studies=1)  # templates are read once per process
    started = time.monotonic()
    big = generate(tmp_path / "big", studies=200, series_per_study=2, instances_per_series=5)
    elapsed = time.monotonic() - started
    assert len(big.instances) == 2000
    assert elapsed < 15, f"{elapsed:.1f}s for 2000 instances"


def test_rejects_nonsense_sizes(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, studies=1, series_per_study=0)
