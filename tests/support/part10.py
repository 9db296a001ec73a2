"""DICOM datasets written as Part 10 bytes in a chosen transfer syntax, for the digest
tests (the same content in several encodings must give one digest)."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset


def part10_bytes(ds: Dataset, syntax: str, *, undefined_lengths: bool | None = None) -> bytes:
    """``ds`` as a Part 10 file in ``syntax``; optionally every sequence and item with
    undefined (True) or defined (False) length. ``ds`` itself is left as it was."""
    ds = ds.copy()
    ds.file_meta = ds.file_meta.copy() if hasattr(ds, "file_meta") else Dataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.3")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3.4")
    if undefined_lengths is not None:
        for element in ds.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = undefined_lengths
                for item in element.value:
                    item.is_undefined_length_sequence_item = undefined_lengths
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
