"""drctl.dicom.digest: one content digest across transfer syntaxes and sequence
encodings, and a different one for any changed byte of content."""

from __future__ import annotations

import time
import zlib
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.filereader import read_preamble
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from drctl.dicom.digest import content_digest, file_digest
from drctl.errors import DicomMalformed
from tests.support.part10 import part10_bytes

# Uncompressed little-endian files with sequences, private tags, pixel data, SR trees.
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "rtdose_1frame.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "priv_SQ.dcm",
    "nested_priv_SQ.dcm",
    "liver_1frame.dcm",
]


def _load(name: str) -> Dataset:
    return dcmread(get_testdata_file(name))


def _body(part10: bytes) -> bytes:
    """The dataset bytes after the File Meta (what a C-STORE request carries)."""
    meta_start = 132
    fp = BytesIO(part10)
    read_preamble(fp, False)
    group_length = int.from_bytes(part10[meta_start + 8 : meta_start + 12], "little")
    return part10[meta_start + 12 + group_length :]


@pytest.mark.parametrize("name", FILES)
def test_implicit_and_explicit_le_give_one_digest(name: str) -> None:
    ds = _load(name)
    implicit = file_digest(part10_bytes(ds, ImplicitVRLittleEndian))
    explicit = file_digest(part10_bytes(ds, ExplicitVRLittleEndian))
    assert implicit.transfer_syntax_uid == ImplicitVRLittleEndian
    assert explicit.transfer_syntax_uid == ExplicitVRLittleEndian
    assert implicit.digest == explicit.digest


@pytest.mark.parametrize(
    "name", ["rtplan.dcm", "test-SR.dcm", "nested_priv_SQ.dcm", "liver_1frame.dcm"]
)
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_defined_and_undefined_length_sequences_give_one_digest(name: str, syntax: str) -> None:
    ds = _load(name)
    defined = part10_bytes(ds, syntax, undefined_lengths=False)
    undefined = part10_bytes(ds, syntax, undefined_lengths=True)
    assert defined != undefined
    assert file_digest(defined).digest == file_digest(undefined).digest


def test_content_digest_of_dataset_bytes_equals_file_digest() -> None:
    part10 = part10_bytes(_load("CT_small.dcm"), ImplicitVRLittleEndian)
    assert content_digest(_body(part10), ImplicitVRLittleEndian) == file_digest(part10).digest


def test_file_digest_names_the_instance() -> None:
    ds = _load("MR_small_implicit.dcm")
    found = file_digest(part10_bytes(ds, ImplicitVRLittleEndian))
    assert found.sop_instance_uid == ds.SOPInstanceUID
    assert found.sop_class_uid == ds.SOPClassUID
    assert len(found.digest) == 64


def test_one_changed_pixel_byte_changes_the_digest() -> None:
    ds = _load("CT_small.dcm")
    before = file_digest(part10_bytes(ds, ExplicitVRLittleEndian)).digest
    pixels = bytearray(ds.PixelData)
    pixels[len(pixels) // 2] ^= 0x01
    ds.PixelData = bytes(pixels)
    assert file_digest(part10_bytes(ds, ExplicitVRLittleEndian)).digest != before


@pytest.mark.parametrize(
    "change",
    [
        lambda ds: setattr(ds, "PatientID", ds.PatientID + "X"),
        lambda ds: setattr(ds, "InstanceNumber", int(ds.InstanceNumber) + 1),
        lambda ds: setattr(ds, "StudyDescription", "other"),
        lambda ds: setattr(ds[0x00431028], "value", b"\x00" * 2),  # private element
    ],
    ids=["patient-id", "instance-number", "new-element", "private-value"],
)
def test_any_changed_value_changes_the_digest(change) -> None:
    ds = _load("CT_small.dcm")
    before = file_digest(part10_bytes(ds, ImplicitVRLittleEndian)).digest
    change(ds)
    assert file_digest(part10_bytes(ds, ImplicitVRLittleEndian)).digest != before


def test_a_changed_value_inside_a_sequence_changes_the_digest() -> None:
    ds = _load("rtplan.dcm")
    before = file_digest(part10_bytes(ds, ExplicitVRLittleEndian)).digest
    ds.BeamSequence[0].BeamName = "Other beam"
    assert file_digest(part10_bytes(ds, ExplicitVRLittleEndian)).digest != before


def test_group_lengths_and_trailing_padding_do_not_count() -> None:
    ds = _load("MR_small.dcm")
    plain = file_digest(part10_bytes(ds, ExplicitVRLittleEndian)).digest
    ds.add_new(0x00080000, "UL", 1234)  # group length
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 16)  # data set trailing padding
    assert file_digest(part10_bytes(ds, ExplicitVRLittleEndian)).digest == plain


def test_deflated_dataset_digests_like_its_inflated_form() -> None:
    part10 = part10_bytes(_load("CT_small.dcm"), ExplicitVRLittleEndian)
    body = _body(part10)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = packer.compress(body) + packer.flush()
    assert content_digest(deflated, DeflatedExplicitVRLittleEndian) == file_digest(part10).digest


def test_big_endian_is_refused() -> None:
    with pytest.raises(ValueError, match="little-endian"):
        content_digest(b"", ExplicitVRBigEndian)


@pytest.mark.parametrize(
    "data",
    [b"\x08\x00\x18\x00UI\xff\x7f1.2", b"\x08\x00\x18\x00UI\x04\x001.2\x00\x10\x00"],
    ids=["length-beyond-end", "truncated-header"],
)
def test_unparseable_bytes_raise_malformed(data: bytes) -> None:
    with pytest.raises(DicomMalformed):
        content_digest(data, ExplicitVRLittleEndian)


def test_a_file_without_file_meta_is_malformed() -> None:
    with pytest.raises(DicomMalformed):
        file_digest(b"\x00" * 200)


def test_digest_speed_on_pydicom_test_files() -> None:
    """Measured, printed (-s) and bounded loosely: the digest runs per new instance."""
    blobs = []
    for path in get_testdata_files("*.dcm"):
        data = open(path, "rb").read()
        try:
            file_digest(data)
        except (DicomMalformed, ValueError):
            continue  # big endian, no File Meta
        blobs.append(data)
    assert len(blobs) > 40
    rounds = 3
    started = time.perf_counter()
    for _ in range(rounds):
        for data in blobs:
            file_digest(data)
    per_file = (time.perf_counter() - started) / (rounds * len(blobs))
    print(f"\nfile_digest: {per_file * 1e6:.0f} us/instance over {len(blobs)} pydicom test files")
    assert per_file < 0.05
