"""What an Orthanc 1.10 index says it holds, read straight from the index database.

Two sources with one interface: :class:`SqliteInventory` reads a copy of the SQLite
``index`` file of a stopped node (opened read-only: the copy is not modified), and
:class:`PostgresInventory` reads the PostgreSQL index plugin's tables through a psycopg
connection (possibly inside a REPEATABLE READ transaction on an exported snapshot; the
caller owns the transaction). Every query is set-based: a handful of statements per
call, whatever the number of studies.

The two schemas differ in ways that matter here (measured on Orthanc 1.10.1 and
orthanc-postgresql 4.0):

- ``resourceType`` is 1 patient, 2 study, 3 series, 4 instance in the SQLite index, but
  0, 1, 2, 3 in the PostgreSQL index (the plugin SDK's enumeration);
- the attachment digests are ``uncompressedMD5``/``compressedMD5`` in SQLite and
  ``uncompressedhash``/``compressedhash`` in PostgreSQL (which folds all other names
  to lower case, so the same unquoted SQL works for the rest);
- metadata type 9 is the instance's TransferSyntax and 10 its SopClassUid in both;
  attachment ``fileType`` 1 is the DICOM file, ``compressionType`` 1 none, 2 zlib.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drctl.errors import DrctlError

META_TRANSFER_SYNTAX = 9
META_SOP_CLASS = 10
FILE_TYPE_DICOM = 1
COMPRESSION_NONE = 1
COMPRESSION_ZLIB = 2
TAG_STUDY_UID = (0x0020, 0x000D)
TAG_SERIES_UID = (0x0020, 0x000E)
TAG_SOP_UID = (0x0008, 0x0018)
TAG_STUDY_DATE = (0x0008, 0x0020)
TAG_MODALITY = (0x0008, 0x0060)
TAG_PATIENT_ID = (0x0010, 0x0020)
FETCH_ROWS = 5000


class InventoryError(DrctlError):
    """The index could not be read (not an Orthanc index, unreadable file, ...)."""


@dataclass(frozen=True)
class StudySummary:
    """One study as the index records it. ``patient_id`` is raw: hash it before keeping."""

    study_uid: str
    public_id: str
    internal_id: int
    series_count: int
    instance_count: int
    modalities: tuple[str, ...]
    study_date: str | None
    patient_id: str
    max_instance_internal_id: int | None


@dataclass(frozen=True)
class InstanceRow:
    """One instance and its DICOM attachment. ``stored_md5`` is the MD5 of the bytes in
    the storage file (the compressed MD5 when Orthanc compressed it)."""

    internal_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    study_public_id: str
    attachment_uuid: str | None
    storage_path: str | None
    compressed_size: int | None
    uncompressed_size: int | None
    compression_type: int | None
    stored_md5: str | None
    uncompressed_md5: str | None

    @property
    def compressed(self) -> bool:
        return self.compression_type == COMPRESSION_ZLIB


def storage_path(uuid: str) -> str:
    """Path of an attachment relative to the storage folder: ``uu/id/uuid``."""
    return f"{uuid[0:2]}/{uuid[2:4]}/{uuid}"


@dataclass(frozen=True)
class _Dialect:
    patient: int  # resourceType of a patient; study, series, instance follow
    uncompressed_md5: str
    compressed_md5: str

    @property
    def study(self) -> int:
        return self.patient + 1

    @property
    def series(self) -> int:
        return self.patient + 2

    @property
    def instance(self) -> int:
        return self.patient + 3


SQLITE = _Dialect(patient=1, uncompressed_md5="uncompressedMD5", compressed_md5="compressedMD5")
POSTGRES = _Dialect(patient=0, uncompressed_md5="uncompressedhash", compressed_md5="compressedhash")


def _tag_join(alias: str, owner: str, tag: tuple[int, int]) -> str:
    return (
        f"LEFT JOIN MainDicomTags {alias} ON {alias}.id = {owner} "
        f"AND {alias}.tagGroup = {tag[0]} AND {alias}.tagElement = {tag[1]}"
    )


def _studies_sql(d: _Dialect) -> str:
    return f"""
        SELECT st.internalId, st.publicId, uid.value, sdate.value, pid.value
        FROM Resources st
        {_tag_join("uid", "st.internalId", TAG_STUDY_UID)}
        {_tag_join("sdate", "st.internalId", TAG_STUDY_DATE)}
        {_tag_join("pid", "st.parentId", TAG_PATIENT_ID)}
        WHERE st.resourceType = {d.study}"""


def _series_sql(d: _Dialect) -> str:
    return f"""
        SELECT se.parentId, modality.value
        FROM Resources se
        {_tag_join("modality", "se.internalId", TAG_MODALITY)}
        WHERE se.resourceType = {d.series}"""


def _instance_counts_sql(d: _Dialect) -> str:
    return f"""
        SELECT se.parentId, COUNT(i.internalId), MAX(i.internalId)
        FROM Resources i JOIN Resources se ON se.internalId = i.parentId
        WHERE i.resourceType = {d.instance}
        GROUP BY se.parentId"""


def _instances_sql(d: _Dialect, where: Sequence[str]) -> str:
    conditions = " AND ".join([f"i.resourceType = {d.instance}", *where])
    return f"""
        SELECT i.internalId, stu.value, seu.value, sop.value, sc.value, ts.value,
               st.publicId, f.uuid, f.compressedSize, f.uncompressedSize,
               f.compressionType, f.{d.compressed_md5}, f.{d.uncompressed_md5}
        FROM Resources i
        JOIN Resources se ON se.internalId = i.parentId
        JOIN Resources st ON st.internalId = se.parentId
        {_tag_join("stu", "st.internalId", TAG_STUDY_UID)}
        {_tag_join("seu", "se.internalId", TAG_SERIES_UID)}
        {_tag_join("sop", "i.internalId", TAG_SOP_UID)}
        LEFT JOIN Metadata sc ON sc.id = i.internalId AND sc.type = {META_SOP_CLASS}
        LEFT JOIN Metadata ts ON ts.id = i.internalId AND ts.type = {META_TRANSFER_SYNTAX}
        LEFT JOIN AttachedFiles f ON f.id = i.internalId AND f.fileType = {FILE_TYPE_DICOM}
        WHERE {conditions}
        ORDER BY i.internalId"""


def _summaries(
    studies: Iterable[Sequence[Any]],
    series: Iterable[Sequence[Any]],
    counts: Iterable[Sequence[Any]],
) -> list[StudySummary]:
    modalities: dict[int, set[str]] = {}
    series_count: dict[int, int] = {}
    for study_internal, modality in series:
        series_count[study_internal] = series_count.get(study_internal, 0) + 1
        if modality:
            modalities.setdefault(study_internal, set()).add(modality)
    instances = {row[0]: (int(row[1]), int(row[2])) for row in counts}
    result = []
    for internal_id, public_id, study_uid, study_date, patient in studies:
        count, max_id = instances.get(internal_id, (0, None))
        result.append(
            StudySummary(
                study_uid=study_uid or "",
                public_id=public_id,
                internal_id=int(internal_id),
                series_count=series_count.get(internal_id, 0),
                instance_count=count,
                modalities=tuple(sorted(modalities.get(internal_id, ()))),
                study_date=study_date or None,
                patient_id=patient or "",
                max_instance_internal_id=max_id,
            )
        )
    result.sort(key=lambda s: s.internal_id)
    return result


def _instance_row(row: Sequence[Any]) -> InstanceRow:
    (
        internal_id,
        study_uid,
        series_uid,
        sop_uid,
        sop_class,
        syntax,
        study_public,
        uuid,
        csize,
        usize,
        ctype,
        cmd5,
        umd5,
    ) = row
    return InstanceRow(
        internal_id=int(internal_id),
        study_uid=study_uid or "",
        series_uid=series_uid or "",
        sop_uid=sop_uid or "",
        sop_class_uid=sop_class,
        transfer_syntax_uid=syntax,
        study_public_id=study_public,
        attachment_uuid=uuid,
        storage_path=storage_path(uuid) if uuid else None,
        compressed_size=None if csize is None else int(csize),
        uncompressed_size=None if usize is None else int(usize),
        compression_type=None if ctype is None else int(ctype),
        stored_md5=cmd5 or umd5 or None,
        uncompressed_md5=umd5 or None,
    )


class _Inventory:
    """Shared logic; subclasses supply ``_rows`` and the dialect's list filter."""

    dialect: _Dialect

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Sequence[Any]]:
        raise NotImplementedError

    def _scalar(self, sql: str) -> Any:
        return next(iter(self._rows(sql)))[0]

    def _in_list(self, column: str, values: list[str]) -> tuple[str, Any]:
        raise NotImplementedError

    def _param(self) -> str:
        raise NotImplementedError

    def study_summaries(self) -> list[StudySummary]:
        """Every study with its series/instance counts, modalities, date and raw patient
        ID, ordered by internal id. Three queries, whatever the index size."""
        d = self.dialect
        return _summaries(
            self._rows(_studies_sql(d)),
            self._rows(_series_sql(d)),
            self._rows(_instance_counts_sql(d)),
        )

    def instances(
        self,
        *,
        after_internal_id: int | None = None,
        study_public_ids: Iterable[str] | None = None,
    ) -> Iterator[InstanceRow]:
        """Yield instances ordered by internal id: all of them, those created after
        ``after_internal_id``, and/or those of the studies named by Orthanc ID."""
        where: list[str] = []
        params: list[Any] = []
        if after_internal_id is not None:
            where.append(f"i.internalId > {self._param()}")
            params.append(int(after_internal_id))
        if study_public_ids is not None:
            clause, value = self._in_list("st.publicId", list(study_public_ids))
            where.append(clause)
            params.append(value)
        for row in self._rows(_instances_sql(self.dialect, where), params):
            yield _instance_row(row)

    def max_internal_id(self) -> int:
        """Highest internal id of any resource (0 when empty): ids only grow, so every
        instance created later has a higher one."""
        return int(self._scalar("SELECT MAX(internalId) FROM Resources") or 0)

    def last_change_seq(self) -> int:
        """Sequence number of the newest change still in the index (``Last`` of
        ``/changes``; 0 when empty)."""
        return int(self._scalar("SELECT MAX(seq) FROM Changes") or 0)


class SqliteInventory(_Inventory):
    """Inventory of a copied SQLite ``index`` file (never the live file of a running
    node: Orthanc holds it exclusively). Opened read-only; close it or use ``with``."""

    dialect = SQLITE

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InventoryError(f"Orthanc index copy {self.path} does not exist")
        try:
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self.conn.execute("SELECT 1 FROM Resources LIMIT 1")
        except sqlite3.Error as exc:
            raise InventoryError(
                f"{self.path} is not a readable Orthanc SQLite index ({exc})",
                hint="copy index and index-wal together from a stopped node",
            ) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Sequence[Any]]:
        try:
            cursor = self.conn.execute(sql, tuple(params))
            while batch := cursor.fetchmany(FETCH_ROWS):
                yield from batch
        except sqlite3.Error as exc:
            raise InventoryError(f"reading Orthanc index copy {self.path} failed: {exc}") from exc

    def _in_list(self, column: str, values: list[str]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(values)

    def _param(self) -> str:
        return "?"

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteInventory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresInventory(_Inventory):
    """Inventory of a PostgreSQL index through ``connection`` (a psycopg 3 connection).
    Reads only; the caller opens, snapshots and closes."""

    dialect = POSTGRES

    def __init__(self, connection: Any):
        self.conn = connection

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Sequence[Any]]:
        # A client-side cursor: the result is held in memory, so ask for what is needed
        # (after_internal_id, study_public_ids) on large archives.
        import psycopg

        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, tuple(params))
                while batch := cursor.fetchmany(FETCH_ROWS):
                    yield from batch
        except psycopg.Error as exc:
            raise InventoryError(f"reading the Orthanc PostgreSQL index failed: {exc}") from exc

    def _in_list(self, column: str, values: list[str]) -> tuple[str, Any]:
        return f"{column} = ANY(%s)", values

    def _param(self) -> str:
        return "%s"


def open_inventory(source: Any) -> SqliteInventory | PostgresInventory:
    """An inventory for ``source``: a path to a SQLite index copy, or a psycopg
    connection to a PostgreSQL index. Raises InventoryError for anything else."""
    if isinstance(source, str | Path):
        return SqliteInventory(source)
    if hasattr(source, "cursor") and hasattr(source, "pgconn"):
        return PostgresInventory(source)
    raise InventoryError(f"cannot read an Orthanc inventory from {type(source).__name__}")


def _with_inventory(source: Any, read: Callable[[_Inventory], Any]) -> Any:
    inventory = open_inventory(source)
    try:
        return read(inventory)
    finally:
        if isinstance(inventory, SqliteInventory):
            inventory.close()


def study_summaries(source: Any) -> list[StudySummary]:
    """Every study of the index at ``source`` (see :meth:`_Inventory.study_summaries`)."""
    return _with_inventory(source, lambda inv: inv.study_summaries())


def max_internal_id(source: Any) -> int:
    """Highest resource internal id of the index at ``source``."""
    return _with_inventory(source, lambda inv: inv.max_internal_id())


def last_change_seq(source: Any) -> int:
    """Newest change sequence number of the index at ``source``."""
    return _with_inventory(source, lambda inv: inv.last_change_seq())
