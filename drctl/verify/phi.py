"""Keyed hashes of patient identifiers: the catalog, reports and alerts never hold a
plain patient ID, only HMAC-SHA256 under the site's PHI key (escrowed with the restic
password), so a hash cannot be reversed by hashing a list of known IDs."""

from __future__ import annotations

import hashlib
import hmac


def patient_hash(key: bytes | None, patient_id: str | None) -> str | None:
    """Hex HMAC-SHA256 of ``patient_id`` (32 hex characters), or None without a key or ID."""
    if not key or not patient_id:
        return None
    return hmac.new(key, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:32]
