"""A content digest of a DICOM dataset that survives transfer between PACS nodes.

A dataset received by C-GET is not byte-identical to the stored file when the peer
re-encodes it: Implicit VR Little Endian becomes Explicit VR Little Endian, sequences
change between defined and undefined length, group lengths come and go. The value bytes
of each element do not change. So the digest is SHA-256 over, for each data element in
tag order:

* the tag (4 bytes, big-endian group then element),
* for a sequence: a marker, then for each item a marker and the same walk over the
  item's elements, then an end marker,
* otherwise: a marker, the value length (8 bytes) and the raw value bytes, read with
  pydicom's lazy reader (``Dataset.get_item`` returns the undecoded ``RawDataElement``
  whose bytes are the same in implicit and explicit VR little endian).

Left out, because they describe the encoding rather than the content: the File Meta
group (0002,xxxx), group lengths (gggg,0000), Length to End (0008,0001) and Data Set
Trailing Padding (FFFC,FFFC). An empty sequence and an empty value digest the same way
(implicit VR cannot tell them apart for private tags).

:mod:`drctl.dicom.digest_fast` computes the same digest straight from the bytes for
well-formed datasets; whatever it does not model falls back to the reader below.

Supported transfer syntaxes: every little-endian one (implicit, explicit, deflated;
encapsulated pixel data is hashed as its raw fragments, so a compressed instance only
digests equal to the same compressed encoding). Explicit VR Big Endian is refused.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filereader import data_element_generator, read_dataset, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from drctl.dicom import digest_fast
from drctl.errors import DicomMalformed

_SKIPPED_TAGS = frozenset({0x00080001, 0xFFFCFFFC})
_TAG = struct.Struct(">I")
_LENGTH = struct.Struct(">Q")
_ITEM_HEADER = struct.Struct("<HHL")
_UNDEFINED = 0xFFFFFFFF
_VALUE, _SEQUENCE, _ITEM, _END = b"V", b"S", b"I", b"E"
_SOP_CLASS_UID, _SOP_INSTANCE_UID = 0x00080016, 0x00080018
_UID_TAGS = frozenset({_SOP_CLASS_UID, _SOP_INSTANCE_UID})
_Element = RawDataElement | DataElement


@dataclass(frozen=True)
class FileDigest:
    """Identity and content digest of one stored instance."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    digest: str


def content_digest(dataset_bytes: bytes, transfer_syntax_uid: str) -> str:
    """Return the hex content digest of an encoded dataset without File Meta (as a
    C-STORE request carries it), encoded in ``transfer_syntax_uid``.

    Raises :class:`DicomMalformed` when the bytes cannot be parsed and ``ValueError``
    for a big-endian transfer syntax.
    """
    digest, _ = _digest_dataset(dataset_bytes, transfer_syntax_uid)
    return digest


def file_digest(part10_bytes: bytes) -> FileDigest:
    """Return the identity and content digest of a DICOM Part 10 file's bytes.

    The SOP UIDs come from the dataset (falling back to the File Meta), the transfer
    syntax from the File Meta. Raises :class:`DicomMalformed` when the bytes are not a
    readable Part 10 file and ``ValueError`` for a big-endian transfer syntax.
    """
    try:
        offset, syntax, meta_class, meta_instance = digest_fast.file_meta(part10_bytes)
    except digest_fast.Unusual:
        offset, syntax, meta_class, meta_instance = _file_meta(part10_bytes)
    digest, uids = _digest_dataset(part10_bytes[offset:], syntax)
    return FileDigest(
        sop_instance_uid=uids.get(_SOP_INSTANCE_UID) or meta_instance,
        sop_class_uid=uids.get(_SOP_CLASS_UID) or meta_class,
        transfer_syntax_uid=syntax,
        digest=digest,
    )


def _file_meta(part10_bytes: bytes) -> tuple[int, str, str, str]:
    """(dataset offset, transfer syntax, SOP class, SOP instance) read by pydicom."""
    fp = BytesIO(part10_bytes)
    try:
        read_preamble(fp, False)
        meta = read_dataset(fp, False, True, stop_when=_after_file_meta)
        syntax = str(meta.get("TransferSyntaxUID") or "")
        meta_class = str(meta.get("MediaStorageSOPClassUID") or "")
        meta_instance = str(meta.get("MediaStorageSOPInstanceUID") or "")
    except Exception as exc:  # pydicom raises many types on bad input
        raise DicomMalformed(f"cannot parse DICOM file meta for digest: {exc}") from exc
    if not syntax:
        raise DicomMalformed("DICOM file has no Transfer Syntax UID in its File Meta")
    return fp.tell(), syntax, meta_class, meta_instance


def _after_file_meta(tag: int, vr: str | None, length: int) -> bool:
    return tag >> 16 != 0x0002


def _digest_dataset(dataset_bytes: bytes, transfer_syntax_uid: str) -> tuple[str, dict]:
    """The hex digest and the top-level SOP Class/Instance UIDs found on the way."""
    syntax = UID(transfer_syntax_uid)
    if syntax == ExplicitVRBigEndian:
        raise ValueError("content digests support little-endian transfer syntaxes only")
    if syntax == DeflatedExplicitVRLittleEndian:
        dataset_bytes = _inflate(dataset_bytes)
    # Unknown (private) syntaxes are taken as explicit VR little endian.
    implicit = syntax == ImplicitVRLittleEndian
    sha = hashlib.sha256()
    uids: dict[int, str] = {}
    try:
        digest_fast.dataset_digest(dataset_bytes, implicit, sha.update, uids)
        return sha.hexdigest(), uids
    except Exception:  # Unusual, or anything else: the reader below decides
        sha, uids = hashlib.sha256(), {}
    try:
        elements = _elements(BytesIO(dataset_bytes), implicit)
        _check_complete(elements, len(dataset_bytes))
        for element in elements:
            if element.tag in _UID_TAGS and isinstance(element.value, bytes):
                uids[int(element.tag)] = element.value.decode("ascii").strip("\0 ")
        _walk(elements, sha)
    except DicomMalformed:
        raise
    except Exception as exc:  # pydicom raises many types on bad input
        raise DicomMalformed(f"cannot parse dataset for digest: {exc}") from exc
    return sha.hexdigest(), uids


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompress(data, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise DicomMalformed(f"cannot inflate deflated dataset: {exc}") from exc


def _elements(fp: BytesIO, implicit: bool) -> list[_Element]:
    """The raw elements read from ``fp`` up to its end or an item delimiter, in tag
    order (writers are supposed to sort them; a sort makes it certain)."""
    elements = list(data_element_generator(fp, implicit, True))
    tags = [int(e.tag) for e in elements]
    if any(a >= b for a, b in zip(tags, tags[1:], strict=False)):
        elements = [e for _, e in sorted(zip(tags, elements, strict=True), key=_first)]
    return elements


def _check_complete(elements: list[_Element], size: int) -> None:
    """Raise :class:`DicomMalformed` when the bytes end before the last element does
    (pydicom's reader stops silently at a truncated element)."""
    if not elements and size:
        raise DicomMalformed("no data element could be read")
    last = max(elements, key=_position, default=None)
    if not isinstance(last, RawDataElement) or last.length == _UNDEFINED:
        return  # parsed sequences and undefined lengths were read to their delimiters
    if last.value_tell + last.length != size:
        raise DicomMalformed(f"dataset ends inside or after element {last.tag}")


def _position(element: _Element) -> int:
    if isinstance(element, RawDataElement):
        return element.value_tell or 0
    return element.file_tell or 0


def _first(pair: tuple[int, _Element]) -> int:
    return pair[0]


def _walk(elements: Iterable[_Element], sha) -> None:
    update = sha.update
    for element in elements:
        tag = int(element.tag)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0 or tag in _SKIPPED_TAGS:
            continue
        update(_TAG.pack(tag))
        items = _sequence_items(element)
        if items is None:
            value = _raw_value(element)
            update(_VALUE)
            update(_LENGTH.pack(len(value)))
            update(value)
            continue
        update(_SEQUENCE)
        for item in items:
            update(_ITEM)
            _walk(item, sha)
            update(_END)
        update(_END)


def _sequence_items(element: _Element) -> list[list[_Element]] | None:
    """The items (each a list of raw elements) of a non-empty sequence, or None for any
    other element."""
    if isinstance(element, DataElement):
        # Undefined-length sequences arrive already parsed into datasets.
        if element.VR != "SQ" or not element.value:
            return None
        return [[item.get_item(t) for t in sorted(map(int, item.keys()))] for item in element.value]
    value = element.value
    if not value or not isinstance(value, bytes | bytearray):
        return None
    vr = element.VR
    if vr == "SQ":
        implicit = element.is_implicit_VR
    elif vr is None or vr == "UN":
        # PS3.5 6.2.2: a sequence encoded as UN is implicit VR little endian inside.
        if not digest_fast.is_sequence(int(element.tag), value):
            return None
        implicit = True
    else:
        return None
    return _raw_items(bytes(value), implicit)


def _raw_items(value: bytes, implicit: bool) -> list[list[_Element]]:
    """Split the bytes of a defined-length sequence into its items' elements."""
    fp = BytesIO(value)
    items = []
    while fp.tell() < len(value):
        header = fp.read(8)
        if len(header) < 8:
            raise DicomMalformed("sequence ends inside an item header")
        group, elem, length = _ITEM_HEADER.unpack(header)
        if (group, elem) == (0xFFFE, 0xE0DD):  # sequence delimiter
            break
        if (group, elem) != (0xFFFE, 0xE000):
            raise DicomMalformed(f"expected a sequence item, found ({group:04X},{elem:04X})")
        if length == _UNDEFINED:
            items.append(_elements(fp, implicit))  # stops after the item delimiter
        else:
            items.append(_elements(BytesIO(fp.read(length)), implicit))
    return items


def _raw_value(element: _Element) -> bytes:
    value = element.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if value is None or value == [] or value == "":
        return b""
    raise DicomMalformed(f"element {element.tag} has no raw value to digest")
