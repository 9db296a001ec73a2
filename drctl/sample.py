"""Synthetic sample archives for tests and demos, built from pydicom's bundled files.

:func:`generate` writes ``studies`` studies of Part 10 files (one folder per study) made
from a curated set of templates: several modalities and transfer syntaxes (implicit and
explicit VR little endian, RLE, JPEG baseline/extended/lossless, JPEG 2000) that Orthanc
1.10 accepts over C-STORE and that storescu sends as stored. Every UID is new,
patients are synthetic (``DOE^JANE^7`` / ``PID000007``: greppable, to prove no names
leak), some studies have no StudyDate, and everything is deterministic for a seed.
Templates are read once; each instance is the template patched in place and written.

:func:`more` generates further studies after an archive's last one (new UIDs), for
tests that add studies between two backups.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset

DEFAULT_START_DATE = dt.date(2020, 1, 1)
FAMILY_NAMES = ("DOE", "ROE", "POE", "MOE", "COE", "LOE", "NOE", "TOE")
GIVEN_NAMES = ("JANE", "JOHN", "ALEX", "SAM", "KIM", "LEE", "MAX", "EVA", "NOA")
SEXES = ("F", "M", "O")
_GOLDEN = 0.6180339887498949
# Top-level tags that name people or places in the templates; emptied or dropped.
_BLANKED = (
    "ReferringPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "PerformingPhysicianName",
    "InstitutionName",
    "InstitutionAddress",
)
_DROPPED = ("OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence")


@dataclass(frozen=True)
class Template:
    """One bundled pydicom file used as a model, with its relative weight in the mix."""

    filename: str
    weight: int = 3


# Checked against Orthanc 1.10.1 + storescu 3.6.7 (see load.py for the association
# profile that lets compressed files travel as stored). Rejected: big endian
# (*_expb, *_bigendian: retired), deflate (image_dfl), no File Meta, truncated files,
# odd-length pixel data (JPEG-LS, some J2K, rtdose_rle: dcmtk warns or refuses),
# large multi-frame files (waveform, palette, ybr: slow, nothing new to test).
TEMPLATES: tuple[Template, ...] = (
    Template("CT_small.dcm"),  # CT, explicit VR LE
    Template("MR_small.dcm"),  # MR, explicit VR LE
    Template("MR_small_implicit.dcm"),  # MR, implicit VR LE
    Template("MR_small_RLE.dcm"),  # MR, RLE lossless
    Template("JPEG2000.dcm"),  # NM (SC class), JPEG 2000
    Template("JPEG-lossy.dcm"),  # NM (SC class), JPEG extended 12 bit
    Template("SC_rgb_jpeg_dcmtk.dcm"),  # OT, JPEG baseline
    Template("SC_rgb_jpeg_gdcm.dcm"),  # OT, JPEG lossless
    Template("SC_rgb_small_odd.dcm"),  # OT, explicit VR LE
    Template("rtdose_1frame.dcm", weight=2),  # RTDOSE, implicit VR LE
    Template("reportsi.dcm", weight=2),  # SR basic text, explicit VR LE
    Template("test-SR.dcm", weight=2),  # SR comprehensive, explicit VR LE
    Template("examples_jpeg2k.dcm", weight=1),  # US, JPEG 2000 lossless (150 kB)
)


@dataclass(frozen=True)
class SampleInstance:
    """One file of a sample archive and what it claims to be."""

    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str
    patient_name: str
    modality: str
    study_date: str | None
    accession_number: str
    template: str


@dataclass(frozen=True)
class SampleStudy:
    """One study of a sample archive with its expected counts."""

    number: int
    folder: Path
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str | None
    accession_number: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


@dataclass(frozen=True)
class SampleArchive:
    """Files and studies of a generated archive. ``next_study_number`` is where
    :func:`more` continues."""

    root: Path
    seed: int
    instances: tuple[SampleInstance, ...]
    studies: tuple[SampleStudy, ...]
    next_study_number: int
    series_per_study: int
    instances_per_series: int

    @property
    def paths(self) -> list[Path]:
        """Every file, in generation order."""
        return [item.path for item in self.instances]

    @property
    def study_uids(self) -> set[str]:
        return {study.study_uid for study in self.studies}

    @property
    def patient_names(self) -> set[str]:
        return {study.patient_name for study in self.studies}

    @property
    def patient_ids(self) -> set[str]:
        return {study.patient_id for study in self.studies}

    def study(self, study_uid: str) -> SampleStudy:
        """The study with ``study_uid``. Raises KeyError when the archive has none."""
        for study in self.studies:
            if study.study_uid == study_uid:
                return study
        raise KeyError(study_uid)

    def instances_of(self, study_uid: str) -> list[SampleInstance]:
        return [item for item in self.instances if item.study_uid == study_uid]

    def combined(self, other: SampleArchive) -> SampleArchive:
        """This archive and ``other`` (generated by :func:`more`) as one."""
        return SampleArchive(
            root=self.root,
            seed=self.seed,
            instances=self.instances + other.instances,
            studies=self.studies + other.studies,
            next_study_number=max(self.next_study_number, other.next_study_number),
            series_per_study=self.series_per_study,
            instances_per_series=self.instances_per_series,
        )

    def __add__(self, other: SampleArchive) -> SampleArchive:
        return self.combined(other)


def _uid(seed: int, *parts: object) -> str:
    """A deterministic ``2.25.<39 digits>`` UID: always 44 characters, so a series model
    file can take any instance's UID in place of :data:`_SOP_PLACEHOLDER`."""
    text = "/".join(["drctl-sample", str(seed), *map(str, parts)])
    return "2.25." + str(10**38 + int(hashlib.sha256(text.encode()).hexdigest()[:32], 16))


_SOP_PLACEHOLDER = "2.25." + "9" * 39  # above any _uid value
_NUMBER_PLACEHOLDER = "999999"  # InstanceNumber (IS): 6 characters, even length


@cache
def _template_dataset(filename: str) -> FileDataset:
    path = get_testdata_file(filename, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {filename} is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def template_datasets() -> dict[str, FileDataset]:
    """The curated templates, read once per process (shared: callers must not keep
    references across generations)."""
    return {template.filename: _template_dataset(template.filename) for template in TEMPLATES}


@dataclass(frozen=True)
class _Patient:
    number: int
    patient_id: str
    name: str
    sex: str
    birth_date: str


def _patient(seed: int, study_number: int) -> _Patient:
    # Two consecutive studies share a patient, so patients have several studies.
    number = seed * 100_000 + (study_number + 1) // 2
    family = FAMILY_NAMES[number % len(FAMILY_NAMES)]
    given = GIVEN_NAMES[(number // len(FAMILY_NAMES)) % len(GIVEN_NAMES)]
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=(number * 997) % 25_000)
    return _Patient(
        number=number,
        patient_id=f"PID{number:06d}",
        name=f"{family}^{given}^{number}",
        sex=SEXES[number % len(SEXES)],
        birth_date=birth.strftime("%Y%m%d"),
    )


def _has_no_date(seed: int, study_number: int, share: float) -> bool:
    # A low-discrepancy sequence: any run of studies gets close to ``share`` undated.
    return ((study_number + seed * 0.37) * _GOLDEN) % 1.0 < share


@dataclass(frozen=True)
class _StudyPlan:
    number: int
    study_uid: str
    patient: _Patient
    study_date: str | None
    accession: str
    templates: tuple[str, ...]  # one per series


def _plan(seed: int, number: int, series: int, share: float, start: dt.date) -> _StudyPlan:
    rng = random.Random(f"drctl-sample/{seed}/{number}")
    names = [t.filename for t in TEMPLATES]
    weights = [t.weight for t in TEMPLATES]
    day = start + dt.timedelta(days=rng.randrange(365))
    return _StudyPlan(
        number=number,
        study_uid=_uid(seed, "study", number),
        patient=_patient(seed, number),
        study_date=None if _has_no_date(seed, number, share) else day.strftime("%Y%m%d"),
        accession=f"ACC{seed}-{number:06d}",
        templates=tuple(rng.choices(names, weights=weights, k=series)),
    )


def _patch_study(ds: FileDataset, plan: _StudyPlan) -> None:
    ds.PatientName = plan.patient.name
    ds.PatientID = plan.patient.patient_id
    ds.PatientBirthDate = plan.patient.birth_date
    ds.PatientSex = plan.patient.sex
    ds.StudyInstanceUID = plan.study_uid
    ds.AccessionNumber = plan.accession
    ds.StudyID = f"S{plan.number}"
    ds.StudyDescription = f"drctl sample study {plan.number}"
    ds.StudyTime = "120000"
    for keyword in ("StudyDate", "SeriesDate"):
        if plan.study_date is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, plan.study_date)
    for keyword in _BLANKED:
        if keyword in ds:
            setattr(ds, keyword, "")
    for keyword in _DROPPED:
        if keyword in ds:
            delattr(ds, keyword)


@dataclass(frozen=True)
class _SeriesModel:
    """A series' Part 10 bytes with placeholders for the SOP Instance UID (File Meta and
    dataset) and the InstanceNumber element: instances are byte substitutions, ~50x
    faster than encoding each dataset. Both have fixed lengths, so no length changes."""

    data: bytes
    number_element: bytes  # the InstanceNumber element (tag, VR, length, value)

    def instance(self, sop_uid: str, number: int) -> bytes:
        element = self.number_element.replace(
            _NUMBER_PLACEHOLDER.encode(), f"{number:<6d}"[:6].encode()
        )
        data = self.data.replace(self.number_element, element)
        return data.replace(_SOP_PLACEHOLDER.encode(), sop_uid.encode())


def _series_model(ds: FileDataset) -> _SeriesModel:
    ds.SOPInstanceUID = _SOP_PLACEHOLDER
    ds.file_meta.MediaStorageSOPInstanceUID = _SOP_PLACEHOLDER
    ds.InstanceNumber = _NUMBER_PLACEHOLDER
    buffer = io.BytesIO()
    ds.save_as(buffer)
    data = buffer.getvalue()
    implicit = ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    header = b"\x20\x00\x13\x00" + (b"\x06\x00\x00\x00" if implicit else b"IS\x06\x00")
    element = header + _NUMBER_PLACEHOLDER.encode()
    if data.count(element) != 1 or data.count(_SOP_PLACEHOLDER.encode()) != 2:
        raise RuntimeError("sample template encodes its identifiers unexpectedly")
    return _SeriesModel(data, element)


def _write_study(
    plan: _StudyPlan, folder: Path, seed: int, per_series: int
) -> Iterator[SampleInstance]:
    folder.mkdir(parents=True, exist_ok=True)
    templates = template_datasets()
    for series_index, filename in enumerate(plan.templates, start=1):
        ds = templates[filename]
        _patch_study(ds, plan)
        ds.SeriesInstanceUID = _uid(seed, "series", plan.number, series_index)
        ds.SeriesNumber = series_index
        model = _series_model(ds)
        for instance_index in range(1, per_series + 1):
            sop_uid = _uid(seed, "sop", plan.number, series_index, instance_index)
            path = folder / f"s{series_index:02d}-i{instance_index:04d}.dcm"
            path.write_bytes(model.instance(sop_uid, instance_index))
            yield SampleInstance(
                path=path,
                study_uid=plan.study_uid,
                series_uid=str(ds.SeriesInstanceUID),
                sop_uid=sop_uid,
                sop_class_uid=str(ds.SOPClassUID),
                transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                patient_id=plan.patient.patient_id,
                patient_name=plan.patient.name,
                modality=str(ds.get("Modality", "OT")),
                study_date=plan.study_date,
                accession_number=plan.accession,
                template=filename,
            )


def _study_record(plan: _StudyPlan, folder: Path, items: Sequence[SampleInstance]) -> SampleStudy:
    return SampleStudy(
        number=plan.number,
        folder=folder,
        study_uid=plan.study_uid,
        patient_id=plan.patient.patient_id,
        patient_name=plan.patient.name,
        study_date=plan.study_date,
        accession_number=plan.accession,
        modalities=tuple(sorted({item.modality for item in items})),
        series_count=len({item.series_uid for item in items}),
        instance_count=len(items),
    )


def _build(
    out_dir: Path,
    numbers: Iterable[int],
    *,
    seed: int,
    series: int,
    per_series: int,
    missing_date_share: float,
    start_date: dt.date,
) -> tuple[list[SampleInstance], list[SampleStudy]]:
    instances: list[SampleInstance] = []
    studies: list[SampleStudy] = []
    for number in numbers:
        plan = _plan(seed, number, series, missing_date_share, start_date)
        folder = out_dir / f"study-{number:06d}"
        items = list(_write_study(plan, folder, seed, per_series))
        instances.extend(items)
        studies.append(_study_record(plan, folder, items))
    return instances, studies


def generate(
    out_dir: str | Path,
    *,
    studies: int,
    series_per_study: int = 2,
    instances_per_series: int = 3,
    seed: int = 0,
    missing_date_share: float = 0.1,
    start_date: dt.date = DEFAULT_START_DATE,
    first_study_number: int = 1,
) -> SampleArchive:
    """Write ``studies`` synthetic studies under ``out_dir`` and return their inventory.

    Study dates fall in the year after ``start_date``; about ``missing_date_share`` of
    the studies have no StudyDate. Raises ValueError for non-positive sizes.
    """
    if studies < 0 or series_per_study < 1 or not 1 <= instances_per_series <= 999_999:
        raise ValueError("need studies >= 0, series_per_study >= 1, 1 <= instances <= 999999")
    root = Path(out_dir)
    numbers = range(first_study_number, first_study_number + studies)
    instances, records = _build(
        root,
        numbers,
        seed=seed,
        series=series_per_study,
        per_series=instances_per_series,
        missing_date_share=missing_date_share,
        start_date=start_date,
    )
    return SampleArchive(
        root=root,
        seed=seed,
        instances=tuple(instances),
        studies=tuple(records),
        next_study_number=first_study_number + studies,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
    )


def more(
    archive: SampleArchive,
    studies: int,
    *,
    out_dir: str | Path | None = None,
    missing_date_share: float = 0.1,
    start_date: dt.date = DEFAULT_START_DATE,
) -> SampleArchive:
    """Generate ``studies`` further studies numbered after ``archive``'s last one (same
    seed, new UIDs) and return them as an archive of their own; chain calls on the
    result, or use ``archive + result`` for the whole set."""
    return generate(
        out_dir if out_dir is not None else archive.root,
        studies=studies,
        series_per_study=archive.series_per_study,
        instances_per_series=archive.instances_per_series,
        seed=archive.seed,
        missing_date_share=missing_date_share,
        start_date=start_date,
        first_study_number=archive.next_study_number,
    )


add_studies = more
