"""Archives for the benchmarks, and loading them into nodes.

Two kinds:

- :func:`sample_archive`: drctl's own sample archive (:func:`drctl.sample.generate`:
  13 pydicom templates in several transfer syntaxes, ~12 kB per instance on average),
  for the benchmarks whose cost is per study or per instance (B1, B5, B7).
- :func:`ct_archive`: CT instances of clinical size for the benchmarks whose cost is per
  byte (B2, B3, B4): pydicom's bundled ``CT_small.dcm`` with its 128x128 pixel matrix
  tiled to 512x512 (~525 kB per instance, as a CT slice is), new UIDs per study, series
  and instance, and a few pixel bytes that differ per instance (no two files share a
  chunk, so restic cannot deduplicate them as it could identical slices).

Loading goes through dcmtk's storescu (:func:`drctl.pacs.orthanc.load.store_files`) in
a few parallel associations; it is never part of a measured figure.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from drctl.pacs.orthanc.load import store_files
from drctl.sample import SampleArchive, generate

CT_TEMPLATE = "CT_small.dcm"
CT_SIDE = 512
_SOP = "2.25." + "9" * 39  # placeholder: every generated UID has this length
_MARK = b"\xa5\x5a" * 8  # 16 pixel bytes replaced per instance


@dataclass(frozen=True)
class Study:
    study_uid: str
    series: int
    instances: int
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Archive:
    """Files of a generated archive, by study."""

    root: Path
    studies: tuple[Study, ...]

    @property
    def paths(self) -> list[Path]:
        return [p for s in self.studies for p in s.paths]

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)

    @property
    def study_uids(self) -> list[str]:
        return [s.study_uid for s in self.studies]


def sample_archive(root: Path, *, studies: int, series: int, instances: int, seed: int) -> Archive:
    """drctl's sample archive (see the module doc) as an :class:`Archive`."""
    return from_sample(
        generate(
            root,
            studies=studies,
            series_per_study=series,
            instances_per_series=instances,
            seed=seed,
        )
    )


def from_sample(sample: SampleArchive) -> Archive:
    by_study: dict[str, list] = {}
    for item in sample.instances:
        by_study.setdefault(item.study_uid, []).append(item)
    return Archive(
        sample.root,
        tuple(
            Study(
                s.study_uid,
                s.series_count,
                s.instance_count,
                tuple(i.path for i in by_study[s.study_uid]),
            )
            for s in sample.studies
        ),
    )


def _uid(seed: int, *parts: object) -> str:
    text = "/".join(["drctl-bench", str(seed), *map(str, parts)])
    return "2.25." + str(10**38 + int(hashlib.sha256(text.encode()).hexdigest()[:32], 16))


def _ct_model() -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(CT_TEMPLATE, download=False))
    side = int(ds.Rows)
    tile = CT_SIDE // side
    rows = [ds.PixelData[r * side * 2 : (r + 1) * side * 2] * tile for r in range(side)]
    pixels = bytearray(b"".join(rows) * tile)
    pixels[len(pixels) // 2 : len(pixels) // 2 + len(_MARK)] = _MARK
    ds.Rows = ds.Columns = CT_SIDE
    ds.PixelData = bytes(pixels)
    for keyword in ("ReferringPhysicianName", "OperatorsName", "InstitutionName"):
        if keyword in ds:
            setattr(ds, keyword, "")
    return ds


def ct_archive(
    root: Path, *, studies: int, series: int, instances: int, seed: int, first: int = 1
) -> Archive:
    """``studies`` CT studies of ``series`` x ``instances`` clinical-size slices,
    numbered from ``first`` (call again with a higher ``first`` for more studies)."""
    ds = _ct_model()
    made = []
    for number in range(first, first + studies):
        study_uid = _uid(seed, "study", number)
        folder = root / f"ct-{number:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.PatientName, ds.PatientID = f"CT^BENCH^{number}", f"BENCH{number:06d}"
        ds.StudyInstanceUID, ds.StudyID = study_uid, f"B{number}"
        ds.StudyDate = ds.SeriesDate = f"2024{1 + number % 12:02d}{1 + number % 28:02d}"
        ds.AccessionNumber = f"BENCH{seed}-{number:06d}"
        paths = []
        for s in range(1, series + 1):
            ds.SeriesInstanceUID, ds.SeriesNumber = _uid(seed, "series", number, s), s
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _SOP
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            model = buffer.getvalue()
            for i in range(1, instances + 1):
                sop = _uid(seed, "sop", number, s, i)
                mark = hashlib.sha256(sop.encode()).digest()[: len(_MARK)]
                path = folder / f"s{s:02d}-i{i:04d}.dcm"
                path.write_bytes(model.replace(_SOP.encode(), sop.encode()).replace(_MARK, mark))
                paths.append(path)
        made.append(Study(study_uid, series, series * instances, tuple(paths)))
    return Archive(root, tuple(made))


def load(paths: Sequence[Path], *, aet: str, port: int, parallel: int = 3) -> int:
    """C-STORE ``paths`` into the node at 127.0.0.1:``port`` over ``parallel``
    associations at a time (storescu, TCP_NODELAY); returns how many were sent."""
    paths = list(paths)
    size = max(1, min(500, -(-len(paths) // parallel)))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        sent = pool.map(
            lambda chunk: store_files(chunk, aet=aet, host="127.0.0.1", port=port), chunks
        )
        return sum(sent)
