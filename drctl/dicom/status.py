"""DIMSE status codes: which are results, which end a request, and their meaning in words."""

from __future__ import annotations

from pynetdicom.status import (
    GENERAL_STATUS,
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
    code_to_category,
)

SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = frozenset({0xFF00, 0xFF01})
SUBOPERATIONS_WARNING = 0xB000

_TABLES = {
    "C-FIND": QR_FIND_SERVICE_CLASS_STATUS,
    "C-GET": QR_GET_SERVICE_CLASS_STATUS,
    "C-MOVE": QR_MOVE_SERVICE_CLASS_STATUS,
    "C-STORE": STORAGE_SERVICE_CLASS_STATUS,
    "C-ECHO": GENERAL_STATUS,
}


def is_pending(status: int) -> bool:
    """True for 0xFF00/0xFF01: a result follows and the request goes on."""
    return status in PENDING


def is_warning(status: int) -> bool:
    """True for a warning status (the operation completed, with a caveat)."""
    return code_to_category(status) == "Warning"


def describe(status: int, service: str) -> str:
    """Return ``status`` as ``0xA702 (Failure: Refused: Out of resources...)`` for the
    DIMSE ``service`` (``"C-FIND"``, ``"C-GET"``, ...)."""
    table = _TABLES.get(service, GENERAL_STATUS)
    category, words = table.get(status, GENERAL_STATUS.get(status, ("", "")))
    category = category or code_to_category(status)
    text = f"{category}: {words}" if words else category
    return f"0x{status:04X} ({text})"
