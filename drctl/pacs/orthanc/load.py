"""Load DICOM files into a node over C-STORE with dcmtk's ``storescu``.

storescu proposes uncompressed transfer syntaxes only unless told otherwise (and then
converts implicit VR files to explicit VR), and it cannot transcode JPEG 2000, JPEG-LS
or RLE at all; so each batch gets an association profile (``-xf``) built from the files
themselves: one presentation context per (SOP class, transfer syntax) found, plus an
uncompressed fallback context per SOP class. Every file then travels in the transfer
syntax it is stored in. Batches keep argv short and stay under DICOM's limit of 128
presentation contexts per association; each batch is one association.
``TCP_NODELAY=1`` is set for storescu (dcmtk reads it): Nagle's algorithm otherwise
costs ~90 ms per instance.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.filereader import read_file_meta_info

from drctl.errors import DicomAborted, DicomError, DicomRejected, DicomUnreachable
from drctl.execute import run

UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
MAX_CONTEXTS = 128
DEFAULT_BATCH_FILES = 500
PROFILE = "DRCTL"


class StoreFailed(DicomError):
    """storescu could not store every file (details in ``detail``)."""


@dataclass(frozen=True)
class FileSyntax:
    """What a Part 10 file needs from an association: its SOP class and transfer syntax."""

    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str


def file_syntax(path: str | Path) -> FileSyntax:
    """Read the File Meta group of ``path``. Raises :class:`StoreFailed` if it has none."""
    try:
        meta = read_file_meta_info(path)
        return FileSyntax(
            Path(path), str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
        )
    except (OSError, AttributeError, ValueError) as exc:
        raise StoreFailed(f"{path}: not a DICOM Part 10 file with File Meta ({exc})") from exc


def _contexts(files: Iterable[FileSyntax]) -> list[tuple[str, str]]:
    """(SOP class, transfer syntax or '' for the uncompressed fallback) pairs, in
    first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for item in files:
        seen.setdefault((item.sop_class_uid, item.transfer_syntax_uid), None)
        seen.setdefault((item.sop_class_uid, ""), None)
    return list(seen)


def association_profile(files: Sequence[FileSyntax]) -> str:
    """Return a storescu ``-xf`` configuration text whose profile ``DRCTL`` proposes
    what ``files`` need (see the module docstring)."""
    contexts = _contexts(files)
    syntaxes = sorted({ts for _, ts in contexts if ts})
    names = {ts: f"TS{i}" for i, ts in enumerate(syntaxes, start=1)}
    lines = ["[[TransferSyntaxes]]", "[UNCOMPRESSED]"]
    lines += [
        "TransferSyntax1 = 1.2.840.10008.1.2.1",
        "TransferSyntax2 = 1.2.840.10008.1.2",
        "TransferSyntax3 = 1.2.840.10008.1.2.2",
    ]
    for ts in syntaxes:
        lines += [f"[{names[ts]}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[CONTEXTS]"]
    for number, (sop_class, ts) in enumerate(contexts, start=1):
        lines.append(f"PresentationContext{number} = {sop_class}\\{names.get(ts, 'UNCOMPRESSED')}")
    lines += ["[[Profiles]]", f"[{PROFILE}]", "PresentationContexts = CONTEXTS", ""]
    return "\n".join(lines)


def batches(files: Sequence[FileSyntax], max_files: int) -> Iterator[list[FileSyntax]]:
    """Split ``files`` into batches of at most ``max_files`` whose presentation contexts
    fit in one association."""
    batch: list[FileSyntax] = []
    for item in files:
        if batch and (len(batch) >= max_files or len(_contexts([*batch, item])) > MAX_CONTEXTS):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def storescu_argv(
    profile_path: Path,
    files: Sequence[FileSyntax],
    *,
    aet: str,
    host: str,
    port: int,
    calling_aet: str,
) -> list[str]:
    """argv of one storescu association sending ``files`` (halts on the first failure)."""
    argv = ["storescu", "-aet", calling_aet, "-aec", aet, "-xf", str(profile_path), PROFILE]
    argv += ["-to", "10", "-ta", "30", host, str(port)]
    return argv + [str(item.path) for item in files]


def _failed_file(text: str) -> str | None:
    for line in text.splitlines():
        if "Store Failed, file:" in line:
            return line.split("file:", 1)[1].strip().rstrip(":")
    return None


def _raise_for(result_tail: list[str], *, aet: str, host: str, port: int, calling: str) -> None:
    """Turn storescu's stderr into the error that says what went wrong."""
    text = "\n".join(result_tail)
    where = f"{aet}@{host}:{port}"
    if "Association Rejected" in text:
        raise DicomRejected(f"{where} rejected the association from {calling}", detail=text)
    if "Association Request Failed" in text:
        raise DicomUnreachable(
            f"storescu could not associate with {where}",
            hint="check that the node is running and the host/port are right",
            detail=text,
        )
    failed = _failed_file(text)
    subject = f"storing {failed}" if failed else "storing files"
    if "Peer aborted Association" in text:
        raise DicomAborted(
            f"{where} aborted the association while {subject} (calling AE {calling})",
            hint=f"check that {calling} is declared in the node's DicomModalities",
            detail=text,
        )
    raise StoreFailed(f"storescu failed {subject} into {where}", detail=text)


def store_files(
    paths: Iterable[str | Path],
    *,
    aet: str,
    host: str,
    port: int,
    calling_aet: str = "DRCTL",
    batch_files: int = DEFAULT_BATCH_FILES,
    timeout: float = 600.0,
) -> int:
    """Send every file of ``paths`` to ``aet@host:port`` and return how many were sent.

    Raises :class:`DicomUnreachable` when no association could be made,
    :class:`DicomRejected` when the node refused it, :class:`DicomAborted` when the node
    aborted it (Orthanc does so for a calling AE it does not know), :class:`StoreFailed`
    when a file was not stored (storescu's stderr tail is in ``detail``), and
    :class:`~drctl.errors.ToolMissing` when storescu is not installed.
    """
    files = [file_syntax(path) for path in paths]
    sent = 0
    with tempfile.TemporaryDirectory(prefix="drctl-storescu-") as tmp:
        profile_path = Path(tmp) / "storescu.cfg"
        for batch in batches(files, batch_files):
            profile_path.write_text(association_profile(batch))
            argv = storescu_argv(
                profile_path, batch, aet=aet, host=host, port=port, calling_aet=calling_aet
            )
            result = run(argv, env={"TCP_NODELAY": "1"}, timeout=timeout)
            if result.returncode != 0:
                _raise_for(result.stderr_tail, aet=aet, host=host, port=port, calling=calling_aet)
            sent += len(batch)
    return sent
