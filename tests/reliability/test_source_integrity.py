"""Bad files in the PACS storage area: a new file truncated, replaced by bytes that are not
DICOM, or altered in place (its MD5 differs from the one the index recorded when the PACS
received it), and an already backed-up file truncated later. Each is reported by its
study; the backup completes (the snapshot is recorded) in state ``warning``, exit 1."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from drctl.sample import more
from drctl.verify.integrity import examine_new
from tests.support.scenarios import env_for, primary, study_public_id


def stored_file(node, archive, study_uid: str, index: int = 0) -> Path:
    instances = node.rest.get(f"/studies/{study_public_id(archive, study_uid)}/instances")
    instance = sorted(instances, key=lambda i: i["ID"])[index]
    uuid = node.rest.get(f"/instances/{instance['ID']}/attachments/dicom/info")["Uuid"]
    return node.spec.storage_dir / uuid[:2] / uuid[2:4] / uuid


def rewrite(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_bad_source_files_are_reported_by_study_and_the_backup_completes(tmp_path):
    with primary(tmp_path, studies=4) as (node, archive):
        # one rewritten old file of 16 stays under the mass-modification breaker
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")}, node={"modified_alarm": 0.5})
        env.cli_json("repo", "init")
        assert env.cli_json("backup", "run")["state"] == "succeeded"
        later = more(archive, 3, out_dir=tmp_path / "later")
        node.load(later.paths)
        truncated, not_dicom, altered = sorted(later.study_uids)
        old = sorted(archive.study_uids)[0]

        path = stored_file(node, later, truncated)
        rewrite(path, path.read_bytes()[: path.stat().st_size // 2])
        path = stored_file(node, later, not_dicom)
        size = path.stat().st_size  # same length: only the MD5 can tell
        rewrite(path, (b"this is not a DICOM file, just text " * (size // 36 + 1))[:size])
        path = stored_file(node, later, altered)
        data = bytearray(path.read_bytes())
        data[-64:-32] = bytes(b ^ 0x5A for b in data[-64:-32])
        rewrite(path, bytes(data))
        path = stored_file(node, archive, old)
        rewrite(path, path.read_bytes()[:-200])

        proc = env.cli("backup", "run", check_exit=1)
        result = json.loads(proc.stdout)
        assert result["state"] == "warning", result
        assert result["snapshot_id"] and result["studies"] == 7
        found = {(f["kind"], f["study_uid"]) for f in result["findings"]}
        assert found == {
            ("source_corrupt", truncated),
            ("source_corrupt", not_dicom),
            ("source_corrupt", altered),
            ("source_modified", old),
        }, result["findings"]
        assert "source integrity finding" in result["reason"]
        by_study = {f["study_uid"]: f["detail"] for f in result["findings"]}
        assert "bytes, the index recorded" in by_study[truncated]
        assert "differs from the MD5" in by_study[altered]
        [snapshot] = [
            s
            for s in env.cli_json("snapshots", "list")
            if s["snapshot_id"] == result["snapshot_id"]
        ]
        assert snapshot["status"] == "warning"
        # the studies are in the manifest: a person decides, nothing is silently dropped
        manifest = {s["study_uid"] for s in env.cli_json("manifest", "show", "latest")}
        assert {truncated, not_dicom, altered, old} <= manifest


@dataclass
class _Row:
    """An index row of a PACS that keeps no MD5 (Orthanc's StoreMD5ForAttachments off)."""

    sop_uid: str = "1.2.3.4.5"
    series_uid: str = "1.2.3.4"
    study_uid: str = "1.2.3"
    sop_class_uid: str = "1.2.840.10008.5.1.4.1.1.2"
    transfer_syntax_uid: str = "1.2.840.10008.1.2.1"
    storage_path: str = "ab/cd/abcd"
    compressed_size: int = 40
    stored_md5: str | None = None
    compressed: bool = False
    internal_id: int = 1


def test_without_an_index_md5_a_file_that_is_not_dicom_is_still_reported():
    stored = b"x" * 40
    out = examine_new([_Row()], lambda path: stored, lambda data, compressed: data)
    assert [(f.kind, f.study_uid) for f in out.findings] == [("not_dicom", "1.2.3")]
    assert "not readable DICOM" in out.findings[0].detail
