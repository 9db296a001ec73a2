"""S3-compatible object storage (boto3): the bucket behind a restic ``s3:`` repository.

drctl never writes image or index data here itself (restic does, encrypted); this adapter
checks and prepares the bucket: existence, versioning, Object Lock, and whether the backup
credentials can delete (they should not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drctl.errors import BackendUnreachable, UsageError
from drctl.net import STORAGE_CACERT_HINT, UNTRUSTED_CERTIFICATE


@dataclass(frozen=True)
class S3Location:
    endpoint_url: str
    bucket: str
    prefix: str


def parse_s3_url(url: str) -> S3Location:
    """restic's ``s3:`` URL -> endpoint, bucket, prefix.

    ``s3:http://127.0.0.1:9000/bucket/prefix``, ``s3:https://host/bucket``, and
    ``s3:s3.amazonaws.com/bucket/prefix`` (no scheme means https)."""
    if not url.startswith("s3:"):
        raise UsageError(f"not an s3: repository URL: {url!r}")
    rest = url[3:]
    m = re.match(r"^(https?)://([^/]+)/([^/]+)/?(.*)$", rest)
    if m:
        scheme, host, bucket, prefix = m.groups()
    else:
        m = re.match(r"^([^/]+)/([^/]+)/?(.*)$", rest)
        if not m:
            raise UsageError(f"cannot read bucket from repository URL {url!r}")
        scheme, (host, bucket, prefix) = "https", m.groups()
    return S3Location(f"{scheme}://{host}", bucket, prefix.strip("/"))


@dataclass(frozen=True)
class BucketStatus:
    exists: bool
    versioning: str  # "Enabled", "Suspended" or "Disabled"
    object_lock: str  # "Enabled" with mode/days, or "Disabled"
    mutable: bool  # objects can be overwritten or deleted without a trace

    def to_json(self) -> dict:
        return {"exists": self.exists, "versioning": self.versioning,
                "object_lock": self.object_lock, "mutable": self.mutable}


class S3Bucket:
    """One bucket, reached with given credentials and short timeouts."""

    def __init__(self, location: S3Location, *, key_id: str | None, secret: str | None,
                 region: str | None = None, timeout: float = 10.0, verify: bool | str = True):
        import boto3
        from botocore.config import Config

        self.location = location
        self.client = boto3.client(
            "s3",
            endpoint_url=location.endpoint_url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name=region or "us-east-1",
            verify=verify,
            config=Config(connect_timeout=timeout, read_timeout=timeout,
                          retries={"max_attempts": 2, "mode": "standard"},
                          s3={"addressing_style": "path"}),
        )

    def _call(self, what: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError:
            raise
        except BotoCoreError as exc:
            if UNTRUSTED_CERTIFICATE.search(str(exc)):
                raise BackendUnreachable(
                    f"object storage {self.location.endpoint_url}: its TLS certificate is not "
                    f"trusted ({what}): {exc}",
                    hint=STORAGE_CACERT_HINT,
                ) from None
            raise BackendUnreachable(
                f"object storage {self.location.endpoint_url} unreachable while {what}: {exc}",
                hint="check the repository URL and the network",
            ) from None

    def status(self) -> BucketStatus:
        from botocore.exceptions import ClientError

        bucket = self.location.bucket
        try:
            self._call("checking the bucket", self.client.head_bucket, Bucket=bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                return BucketStatus(False, "Disabled", "Disabled", True)
            if code in ("403", "AccessDenied", "Forbidden"):
                raise BackendUnreachable(
                    f"bucket {bucket} at {self.location.endpoint_url}: access denied",
                    hint="check the credentials references and their policy "
                         "(s3:ListBucket on the bucket)") from None
            raise BackendUnreachable(f"bucket {bucket}: {code or exc}") from None
        versioning = self._call("reading versioning", self.client.get_bucket_versioning,
                                Bucket=bucket).get("Status") or "Disabled"
        lock = "Disabled"
        try:
            cfg = self._call("reading object lock", self.client.get_object_lock_configuration,
                             Bucket=bucket).get("ObjectLockConfiguration", {})
            if cfg.get("ObjectLockEnabled") == "Enabled":
                rule = cfg.get("Rule", {}).get("DefaultRetention", {})
                lock = "Enabled" + (f" ({rule.get('Mode')}, {rule.get('Days') or rule.get('Years')}"
                                    f" {'days' if rule.get('Days') else 'years'})" if rule else "")
        except ClientError:
            lock = "Disabled"
        return BucketStatus(True, versioning, lock, mutable=versioning != "Enabled"
                            and not lock.startswith("Enabled"))

    def create(self) -> None:
        self._call("creating the bucket", self.client.create_bucket, Bucket=self.location.bucket)

    def enable_versioning(self) -> None:
        self._call("enabling versioning", self.client.put_bucket_versioning,
                   Bucket=self.location.bucket,
                   VersioningConfiguration={"Status": "Enabled"})

    def deletes_beyond_locks(self) -> bool:
        """Whether these credentials may delete objects outside restic's ``locks/``: a
        small probe object is written under the repository prefix (restic ignores it) and
        deleted. A refused delete leaves the probe behind, overwritten the next time.
        False when the probe cannot even be written."""
        from botocore.exceptions import ClientError

        key = "/".join(p for p in (self.location.prefix, "drctl-delete-probe") if p)
        try:
            self._call("writing a probe object", self.client.put_object,
                       Bucket=self.location.bucket, Key=key,
                       Body=b"drctl: may these credentials delete objects?\n")
        except ClientError:
            return False
        return self.can_delete(key)

    def can_delete(self, key: str) -> bool:
        """Try to delete ``key`` (a probe object drctl wrote); True if it was allowed."""
        from botocore.exceptions import ClientError

        try:
            self._call("probing delete permission", self.client.delete_object,
                       Bucket=self.location.bucket, Key=key)
            return True
        except ClientError:
            return False
