"""The fast path of :mod:`drctl.dicom.digest`: the same content digest, computed by
walking the encoded bytes with ``struct`` instead of through pydicom's reader. A backup
digests every instance that enters a snapshot and a drill every instance it retrieves;
on typical instances this path is an order of magnitude faster.

It models pydicom's reader exactly for well-formed little-endian datasets and raises
:class:`Unusual` at the first thing it does not model (an unknown or invalid VR, tags out
of order or repeated, an element, item or sequence that overruns its container, bytes
left over, UN with undefined length, a malformed File Meta ...). The caller then digests
with the reference implementation, so a digest never depends on which path computed it;
``tests/unit/test_dicom_digest.py`` compares both paths on real and mutated files.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable

from pydicom.datadict import _dictionary_vr_fast, dictionary_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

_IMPLICIT_HEADER = struct.Struct("<HHL").unpack_from
_EXPLICIT_HEADER = struct.Struct("<HH2sH").unpack_from
_LONG = struct.Struct("<L").unpack_from
# what digest._walk feeds, in one piece: tag + marker (+ value length)
_TAG_VALUE = struct.Struct(">IcQ").pack
_TAG_MARK = struct.Struct(">Ic").pack
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_ITEM_BYTES = b"\xfe\xff\x00\xe0"
_SEQUENCE_END_BYTES = b"\xfe\xff\xdd\xe0"
_SKIPPED_TAGS = frozenset({0x00080001, 0xFFFCFFFC})
_UID_TAGS = frozenset({0x00080016, 0x00080018})
_VALUE, _SEQUENCE, _ITEM_MARK, _END = b"V", b"S", b"I", b"E"
_VRS = {str(vr.value).encode(): str(vr.value) for vr in VR if len(str(vr.value)) == 2}
_LONG_VRS = frozenset(str(vr.value) for vr in EXPLICIT_VR_LENGTH_32)
_PLAIN_UID = re.compile(rb"[0-9.]+\x00?")

Update = Callable[[bytes | memoryview], None] | None


class Unusual(Exception):
    """The bytes hold something this path does not model: use the reference path."""


def is_sequence(tag: int, value: bytes | memoryview) -> bool:
    """Whether a defined-length element without a usable VR (implicit VR, or UN) holds a
    sequence: the dictionary says SQ, or (unknown tag) its value starts with an item."""
    known = _sq_by_dictionary(tag)
    return bytes(value[:4]) == _ITEM_BYTES if known is None else known


@functools.lru_cache(maxsize=65536)
def _sq_by_dictionary(tag: int) -> bool | None:
    """Whether the dictionary gives ``tag`` VR SQ; None when the tag is not in it."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return None


def dataset_digest(data: bytes, implicit: bool, update: Callable, uids: dict) -> None:
    """Feed the digest of a whole encoded dataset (no File Meta) to ``update`` and put
    the top-level SOP Class/Instance UIDs into ``uids``. Raises :class:`Unusual`."""
    view = memoryview(data)
    _elements(view, 0, len(view), implicit, update, uids, until_item_end=False)


def file_meta(data: bytes) -> tuple[int, str, str, str]:
    """(offset of the dataset, transfer syntax, SOP class, SOP instance) of a Part 10
    file's bytes, the UIDs as pydicom decodes them ("" when absent). Raises
    :class:`Unusual` for anything but a plain explicit VR little endian group 0002."""
    if data[128:132] != b"DICM":
        raise Unusual("no DICM prefix")
    view, pos, last = memoryview(data), 132, -1
    found: dict[int, str] = {}
    while pos + 8 <= len(view):
        group, element, raw_vr, length = _EXPLICIT_HEADER(view, pos)
        if group != 0x0002:
            break
        vr = _VRS.get(raw_vr)
        tag = group << 16 | element
        if vr is None or tag <= last:
            raise Unusual("file meta")
        last, pos = tag, pos + 8
        if vr in _LONG_VRS:
            if pos + 4 > len(view):
                raise Unusual("file meta")
            (length,) = _LONG(view, pos)
            pos += 4
        if length == _UNDEFINED or pos + length > len(view):
            raise Unusual("file meta")
        if element in (0x0002, 0x0003, 0x0010):
            if vr != "UI":
                raise Unusual("file meta UID with another VR")
            value = bytes(view[pos : pos + length])
            if not _PLAIN_UID.fullmatch(value):
                raise Unusual("file meta UID")
            found[element] = value.rstrip(b"\0").decode("ascii")
        pos += length
    if 0 < len(view) - pos < 8:
        raise Unusual("file ends inside an element header")
    syntax = found.get(0x0010, "")
    if not syntax:
        raise Unusual("no transfer syntax")
    return pos, syntax, found.get(0x0002, ""), found.get(0x0003, "")


def _elements(
    view: memoryview,
    pos: int,
    end: int,
    implicit: bool,
    update: Update,
    uids: dict | None,
    *,
    until_item_end: bool,
) -> int:
    """Digest the elements of one dataset or item from ``pos``: up to exactly ``end``,
    or (``until_item_end``) through the item delimiter before ``end``. Returns the
    position after them."""
    last = -1
    while True:
        if not until_item_end and pos == end:
            return pos
        if pos + 8 > end:
            raise Unusual("element header overruns its container")
        if implicit:
            group, element, length = _IMPLICIT_HEADER(view, pos)
            vr = None
        else:
            group, element, raw_vr, length = _EXPLICIT_HEADER(view, pos)
            vr = _VRS.get(raw_vr)
        tag = group << 16 | element
        if group == 0xFFFE:
            if tag == _ITEM_END and until_item_end:
                return pos + 8
            raise Unusual("delimiter or item out of place")
        if tag <= last:
            raise Unusual("tags out of order or repeated")
        last = tag
        if implicit:
            pos += 8
        elif vr is None:
            raise Unusual("unknown VR")
        elif vr in _LONG_VRS:
            if pos + 12 > end:
                raise Unusual("element header overruns its container")
            (length,) = _LONG(view, pos + 8)
            pos += 12
        else:
            pos += 8
        keep = update if group != 0x0002 and element != 0 and tag not in _SKIPPED_TAGS else None
        if length != _UNDEFINED:
            stop = pos + length
            if stop > end:
                raise Unusual("value overruns its container")
            value = view[pos:stop]
            if uids is not None and tag in _UID_TAGS:
                try:
                    uids[tag] = bytes(value).decode("ascii").strip("\0 ")
                except UnicodeDecodeError:
                    raise Unusual("UID not ASCII") from None
            sequence = length > 0 and (
                vr == "SQ" or (vr in (None, "UN") and is_sequence(tag, value))
            )
            if sequence:
                if keep is not None:
                    keep(_TAG_MARK(tag, _SEQUENCE))
                _defined_sequence(view, pos, stop, implicit or vr != "SQ", keep)
            elif keep is not None:
                keep(_TAG_VALUE(tag, _VALUE, length))
                keep(value)
            pos = stop
            continue
        if uids is not None and tag in _UID_TAGS:
            raise Unusual("UID with undefined length")
        pos = _undefined(view, pos, end, tag, vr, implicit, keep)


def _defined_sequence(view: memoryview, pos: int, end: int, implicit: bool, update: Update) -> None:
    """A defined-length sequence's items (the reference reads them from the value's
    bytes; a sequence delimiter ends them, whatever follows). The caller fed the tag."""
    while pos < end:
        if pos + 8 > end:
            raise Unusual("item header overruns its sequence")
        group, element, length = _IMPLICIT_HEADER(view, pos)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM:
            raise Unusual("not an item")
        pos = _item(view, pos + 8, end, length, implicit, update)
    if update is not None:
        update(_END)


def _item(view: memoryview, pos: int, end: int, length: int, implicit: bool, update: Update) -> int:
    if update is not None:
        update(_ITEM_MARK)
    if length == _UNDEFINED:
        pos = _elements(view, pos, end, implicit, update, None, until_item_end=True)
    else:
        if pos + length > end:
            raise Unusual("item overruns its sequence")
        pos = _elements(view, pos, pos + length, implicit, update, None, until_item_end=False)
    if update is not None:
        update(_END)
    return pos


def _undefined(
    view: memoryview,
    pos: int,
    end: int,
    tag: int,
    vr: str | None,
    implicit: bool,
    update: Update,
) -> int:
    """An undefined-length element: a sequence (parsed item by item) or an encapsulated
    value (fragments up to the sequence delimiter). Returns the position after it."""
    if implicit:
        try:
            vr = _dictionary_vr_fast(tag)
        except KeyError:
            if pos + 4 > end:
                raise Unusual("undefined length at the end") from None
            vr = "SQ" if bytes(view[pos : pos + 4]) == _ITEM_BYTES else None
    elif vr == "UN":
        raise Unusual("UN with undefined length")
    if vr == "SQ":
        return _undefined_sequence(view, pos, end, tag, implicit, update)
    start = pos
    while True:
        if pos + 4 > end:
            raise Unusual("encapsulated value without a delimiter")
        marker = bytes(view[pos : pos + 4])
        if marker == _SEQUENCE_END_BYTES:
            break
        if marker != _ITEM_BYTES or pos + 8 > end:
            raise Unusual("not an encapsulated fragment")
        (length,) = _LONG(view, pos + 4)
        pos += 8 + length
    if pos + 8 > end:
        raise Unusual("delimiter overruns its container")
    if update is not None:
        update(_TAG_VALUE(tag, _VALUE, pos - start))
        update(view[start:pos])
    return pos + 8


def _undefined_sequence(
    view: memoryview, pos: int, end: int, tag: int, implicit: bool, update: Update
) -> int:
    """Items up to the sequence delimiter. The reference keeps them as parsed datasets:
    no item at all digests as an empty value."""
    items = 0
    while True:
        if pos + 8 > end:
            raise Unusual("sequence without a delimiter")
        group, element, length = _IMPLICIT_HEADER(view, pos)
        marker = group << 16 | element
        pos += 8
        if marker == _SEQUENCE_END:
            break
        if marker != _ITEM:
            raise Unusual("not an item")
        if items == 0 and update is not None:
            update(_TAG_MARK(tag, _SEQUENCE))
        items += 1
        pos = _item(view, pos, end, length, implicit, update)
    if update is not None:
        if items:
            update(_END)
        else:
            update(_TAG_VALUE(tag, _VALUE, 0))
    return pos
