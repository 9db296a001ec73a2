"""drctl's own records in the repository: small restic snapshots (``backup --stdin``) of
JSON documents, so manifests, index copies, drill verifications and reports are encrypted
like the images and outlive the controller. restic 0.14's ``tag`` rewrites snapshot IDs,
so every tag is chosen when the record is written and never changed."""

from __future__ import annotations

import json
from typing import Any

from drctl.restic.argv import TAG_DRCTL, tag

FORMAT_MANIFEST = "drctl-manifest/1"
FORMAT_VERIFICATION = "drctl-verification/1"


def record_tags(kind: str, *, site: str, node: str | None = None, **extra: Any) -> list[str]:
    """Tags of a drctl record: drctl, kind:K, site:S, node:N and any key:value extras."""
    tags = [TAG_DRCTL, tag("kind", kind), tag("site", site)]
    if node:
        tags.append(tag("node", node))
    for key, value in extra.items():
        if value is not None:
            tags.append(tag(key, str(value)))
    return tags


def record_filename(kind: str, node: str | None, suffix: str = "json") -> str:
    """Fixed file name per kind and node (restic finds the parent by host and path)."""
    return f"drctl-{kind}-{node or 'site'}.{suffix}"


def encode(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode(data: bytes, expected_format: str) -> dict:
    document = json.loads(data.decode("utf-8"))
    if document.get("format") != expected_format:
        raise ValueError(f"not a {expected_format} record (format {document.get('format')!r})")
    return document


STUDY_FIELDS = ("study_uid", "series", "instances", "modalities", "study_date",
                "patient_hash", "bytes", "pacs_id")
INSTANCE_FIELDS = ("study_uid", "series_uid", "sop_uid", "sop_class", "transfer_syntax",
                   "path", "size", "md5", "digest", "compressed", "internal_id")


def pack(obj: Any, fields: tuple[str, ...]) -> list:
    return [getattr(obj, f) for f in fields]


def unpack(row: list, fields: tuple[str, ...]) -> dict:
    return dict(zip(fields, row, strict=True))
