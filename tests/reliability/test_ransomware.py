"""Ransomware and deletion.

1. Separate credentials: the backup keys may write but not delete (except restic's own
   lock files), the prune keys may delete. Tested against a moto_server that enforces
   IAM (``INITIAL_NO_AUTH_ACTION_COUNT``): users, keys and policies made through the IAM
   API, the backup policy being the README's example. Backups work with the backup keys,
   a delete or a ``restic forget`` with them is refused, ``drctl prune`` works with the
   prune keys, and ``drctl doctor`` warns when the backup keys could delete.
2. The circuit breaker: a third of a primary's stored files encrypted in place (AES-CTR,
   names kept). The next backup fails loudly (mass_modification), prune and replication
   pause, and the last clean snapshot stays restorable: a study restored from it comes
   back byte for byte.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from drctl.execute import spawn, terminate
from drctl.net import free_port, wait_for_port
from drctl.storage.s3 import S3Bucket, parse_s3_url
from tests.support.scenarios import env_for, primary, raw_restic, study_public_id

pytestmark = pytest.mark.xdist_group("reliability-ransomware")

BUCKET = "pacs-dr"
PREFIX = "main"
# moto authorizes HEAD bucket as "s3:HeadBucket" (AWS: s3:ListBucket); added to the test
# policies only
MOTO_HEAD_BUCKET = "s3:HeadBucket"


def backup_policy(bucket: str, prefix: str, *, extra: tuple[str, ...] = ()) -> dict:
    """The README's example: write and read, list, no delete except restic's locks."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListAndInspectTheBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketObjectLockConfiguration",
                    *extra,
                ],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Sid": "ReadAndWriteTheRepository",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
            },
            {
                "Sid": "RemoveOnlyResticLocks",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/locks/*",
            },
        ],
    }


def prune_policy(bucket: str, prefix: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                    "s3:GetBucketVersioning",
                    "s3:PutBucketVersioning",
                    "s3:GetBucketObjectLockConfiguration",
                    MOTO_HEAD_BUCKET,
                ],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
            },
        ],
    }


class IamMoto:
    """A dedicated moto_server that enforces IAM after the first three (admin) calls."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.popen = spawn(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"},
            log_path=folder / "moto-iam.log",
        )
        assert wait_for_port("127.0.0.1", self.port, 30), "moto_server did not start"
        iam = self.client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        self.admin = self._keys(iam, "admin")

    def client(self, service: str, key: str, secret: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    @staticmethod
    def _keys(iam, user: str) -> tuple[str, str]:
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def user(self, name: str, policy: dict) -> tuple[str, str]:
        iam = self.client("iam", *self.admin)
        iam.create_user(UserName=name)
        iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
        )
        return self._keys(iam, name)

    def stop(self) -> None:
        terminate(self.popen, grace=5)


def _key_files(folder: Path, name: str, keys: tuple[str, str]) -> dict:
    refs = {}
    for field, value in zip(("aws_access_key_id", "aws_secret_access_key"), keys, strict=True):
        path = folder / f"{name}.{field}"
        path.write_text(value + "\n")
        path.chmod(0o600)
        refs[field] = f"file:{path}"
    return refs


def test_backup_keys_write_but_cannot_delete_prune_keys_can(tmp_path):
    moto = IamMoto(tmp_path)
    try:
        moto.client("s3", *moto.admin).create_bucket(Bucket=BUCKET)
        backup_keys = moto.user(
            "drctl-backup", backup_policy(BUCKET, PREFIX, extra=(MOTO_HEAD_BUCKET,))
        )
        prune_keys = moto.user("drctl-prune", prune_policy(BUCKET, PREFIX))
        # enforced: unknown keys are refused
        with pytest.raises(botocore.exceptions.ClientError):
            moto.client("s3", "nobody", "nothing").list_objects_v2(Bucket=BUCKET)
        with primary(tmp_path / "p", studies=2) as (node, _):
            repo = {
                "url": f"s3:{moto.endpoint}/{BUCKET}/{PREFIX}",
                **_key_files(tmp_path, "backup", backup_keys),
                "prune_credentials": _key_files(tmp_path, "prune", prune_keys),
                "retention": {"last": 1},
                "prune_max_share": 0.6,
            }
            env = env_for(tmp_path, node, repo)
            [init] = env.cli_json("repo", "init")
            assert init["bucket"]["versioning"] == "Enabled", init  # by the prune keys
            first = env.cli_json("backup", "run")
            second = env.cli_json("backup", "run")
            assert first["state"] == second["state"] == "succeeded"
            backup = moto.client("s3", *backup_keys)
            listed = backup.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")["Contents"]
            keys = [o["Key"] for o in listed]
            assert not [k for k in keys if "/locks/" in k]  # restic removed its own locks
            for key in (
                [k for k in keys if "/data/" in k][:1]
                + [k for k in keys if "/snapshots/" in k][:1]
                + [f"{PREFIX}/config"]
            ):
                with pytest.raises(botocore.exceptions.ClientError) as denied:
                    backup.delete_object(Bucket=BUCKET, Key=key)
                assert denied.value.response["Error"]["Code"] == "AccessDenied"
            assert len(env.cli_json("snapshots", "list", "--verify-repository")) == 2
            # the probe doctor uses: the backup keys cannot delete, the prune keys can
            location = parse_s3_url(repo["url"])
            assert not S3Bucket(
                location, key_id=backup_keys[0], secret=backup_keys[1], timeout=10
            ).deletes_beyond_locks()
            assert S3Bucket(
                location, key_id=prune_keys[0], secret=prune_keys[1], timeout=10
            ).deletes_beyond_locks()
            # prune: the prune keys delete what retention allows
            pruned = env.cli_json("prune")
            assert pruned[0]["remove"] == [first["snapshot_id"]], pruned
            listing = env.cli_json("snapshots", "list", "--verify-repository")
            assert [s["snapshot_id"] for s in listing] == [second["snapshot_id"]]
            # keys that can delete are what doctor warns about
            env.doc["repository"]["offsite"].update(
                _key_files(tmp_path, "prune-as-backup", prune_keys)
            )
            env.write()
            doctor = env.cli("doctor", check_exit=None)
            [repo_check] = [
                c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "repository offsite"
            ]
            assert repo_check["status"] == "warn"
            assert "backup credentials can delete objects" in repo_check["detail"]
    finally:
        moto.stop()


# --- the circuit breaker -------------------------------------------------------------------


def encrypt_in_place(path: Path, key: bytes) -> None:
    """What ransomware does: the same name, the content encrypted."""
    nonce = os.urandom(16)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    path.write_bytes(nonce + encryptor.update(path.read_bytes()) + encryptor.finalize())
    later = time.time() + 5
    os.utime(path, (later, later))


def stored_md5s(node, archive, study_uid: str) -> dict[str, str]:
    study = study_public_id(archive, study_uid)
    return {
        i["MainDicomTags"]["SOPInstanceUID"]: node.rest.get(
            f"/instances/{i['ID']}/attachments/dicom/md5"
        )
        for i in node.rest.get(f"/studies/{study}/instances")
    }


def test_encrypted_third_trips_the_breaker_and_the_clean_snapshot_restores(tmp_path):
    with primary(tmp_path / "p", studies=6) as (node, archive):
        env = env_for(
            tmp_path,
            node,
            {"url": str(tmp_path / "repo"), "retention": {"last": 1}, "prune_max_share": 1.0},
        )
        # a standby to replicate to (never reached: the breaker pauses replication first)
        env.doc["node"]["standby"] = {
            "role": "standby",
            "primary": "primary",
            "replication": "dump",
            "aet": "STANDBY",
            "port": free_port(),
            "storage": str(tmp_path / "standby"),
            "index": "postgresql://postgres@127.0.0.1:5432/drctl_never_used",
            "start": ["true"],
            "stop": ["true"],
        }
        env.write()
        env.cli_json("repo", "init")
        clean = env.cli_json("backup", "run")
        assert clean["state"] == "succeeded"
        victim = sorted(archive.study_uids)[2]
        before = stored_md5s(node, archive, victim)

        files = sorted(
            p for p in node.spec.storage_dir.rglob("*") if p.is_file() and len(p.name) == 36
        )
        assert len(files) == 24
        victim_files = set()
        for i in node.rest.get(f"/studies/{study_public_id(archive, victim)}/instances"):
            uuid = node.rest.get(f"/instances/{i['ID']}/attachments/dicom/info")["Uuid"]
            victim_files.add(node.spec.storage_dir / uuid[:2] / uuid[2:4] / uuid)
        others = [f for f in files if f not in victim_files]
        encrypted = sorted(victim_files) + others[: len(files) // 3 - len(victim_files)]
        key = os.urandom(32)
        for path in encrypted:
            encrypt_in_place(path, key)

        # the next backup fails loudly
        proc = env.cli("backup", "run", check_exit=1)
        tripped = json.loads(proc.stdout)
        assert tripped["state"] == "failed", tripped
        assert (
            "circuit breaker" in tripped["reason"] and "8 of 24 stored files" in tripped["reason"]
        ), tripped["reason"]
        human = env.cli("alarms", "list", json_output=False, check_exit=1)
        assert "mass_modification" in human.stdout
        alarms = env.cli_json("alarms", "list", expect=1)
        assert [a["kind"] for a in alarms] == ["mass_modification"]
        # nothing made of encrypted files counts as good
        statuses = {s["snapshot_id"]: s["status"] for s in env.cli_json("snapshots", "list")}
        assert statuses[clean["snapshot_id"]] == "complete"
        assert statuses[tripped["snapshot_id"]] == "suspect"

        # prune and replication pause
        plan = env.cli_json("prune", "--dry-run", expect=1)
        assert plan[0]["refused"] and any("circuit breaker" in r for r in plan[0]["refusals"])
        assert clean["snapshot_id"] in plan[0]["remove"]  # what retention alone would do
        env.cli_json("prune", expect=1)
        replicate = env.cli_json("replicate", "run", expect=1)
        assert replicate["paused"] and "circuit breaker" in replicate["reason"], replicate
        listing = env.cli_json("snapshots", "list", "--verify-repository")
        assert clean["snapshot_id"] in {s["snapshot_id"] for s in listing}

        # the clean snapshot restores the study byte for byte; the default source skips
        # the suspect snapshot
        planned = env.cli_json("restore", "study", victim, "--to", "primary", "--dry-run")
        assert planned["studies"][0]["snapshot_id"] == clean["snapshot_id"], planned
        node.rest.delete("studies", study_public_id(archive, victim))
        restored = env.cli_json(
            "restore", "study", victim, "--to", "primary", "--snapshot", clean["snapshot_id"][:8]
        )
        assert restored["state"] == "succeeded", restored
        assert restored["studies"][0]["verified"]
        assert stored_md5s(node, archive, victim) == before
        check = raw_restic(env, "check")
        assert "no errors were found" in check.stdout
