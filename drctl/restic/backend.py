"""Key-free looks at a repository's storage backend.

Every restic invocation derives the repository key first (scrypt, about half a second on
this class of machine), so drctl avoids restic calls that only answer "is the repository
there?" or "what is the full ID of the snapshot I just made?". restic's repository format
(its design document) keeps a ``config`` file at the root and one file per snapshot under
``snapshots/``, named by the snapshot's full ID; both can be seen without the password.
Backends drctl cannot peek into (sftp, rest, ...) return None and the caller asks restic.
"""

from __future__ import annotations

import os
from pathlib import Path

from drctl.errors import BackendUnreachable, RepositoryMissing


class LocalBackend:
    def __init__(self, path: str, name: str):
        self.root = Path(path.removeprefix("local:"))
        self.name = name

    def probe(self) -> None:
        if not (self.root / "config").is_file():
            raise RepositoryMissing(
                f"repository {self.name} does not exist at {self.root}",
                repository=self.name,
                hint="create it with `drctl repo init` or fix the url",
            )

    def snapshot_ids(self, prefix: str) -> list[str]:
        try:
            return [n for n in os.listdir(self.root / "snapshots") if n.startswith(prefix)]
        except OSError:
            return []

    def lock_ids(self) -> list[str]:
        """IDs of the lock files restic holds (or left behind) in the repository."""
        try:
            return os.listdir(self.root / "locks")
        except OSError:
            return []


class S3Backend:
    def __init__(
        self, url: str, name: str, env: dict[str, str], timeout: float, verify: bool | str
    ):
        from drctl.storage.s3 import S3Bucket, parse_s3_url

        self.location = parse_s3_url(url)
        self.name = name
        self.bucket = S3Bucket(
            self.location,
            key_id=env.get("AWS_ACCESS_KEY_ID"),
            secret=env.get("AWS_SECRET_ACCESS_KEY"),
            region=env.get("AWS_DEFAULT_REGION"),
            timeout=timeout,
            verify=verify,
        )

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.location.prefix, *parts) if p)

    def probe(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.bucket._call(
                "opening the repository",
                self.bucket.client.head_object,
                Bucket=self.location.bucket,
                Key=self._key("config"),
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise RepositoryMissing(
                    f"repository {self.name} does not exist (no config object in bucket "
                    f"{self.location.bucket})",
                    repository=self.name,
                    hint="create it with `drctl repo init` or fix the url",
                ) from None
            raise BackendUnreachable(
                f"repository {self.name}: storage backend refused access ({code or exc})",
                repository=self.name,
                hint="check the S3 credentials references",
            ) from None
        except BackendUnreachable as exc:
            raise BackendUnreachable(
                f"repository {self.name}: {exc.message}", repository=self.name, hint=exc.hint
            ) from None

    def snapshot_ids(self, prefix: str) -> list[str]:
        key_prefix = self._key("snapshots", prefix)
        response = self.bucket._call(
            "listing snapshots",
            self.bucket.client.list_objects_v2,
            Bucket=self.location.bucket,
            Prefix=key_prefix,
        )
        return [obj["Key"].rsplit("/", 1)[-1] for obj in response.get("Contents", [])]

    def lock_ids(self) -> list[str]:
        """IDs of the lock objects restic holds (or left behind) in the repository
        (empty when the credentials may not list them)."""
        from botocore.exceptions import ClientError

        try:
            response = self.bucket._call(
                "listing locks",
                self.bucket.client.list_objects_v2,
                Bucket=self.location.bucket,
                Prefix=self._key("locks") + "/",
            )
        except ClientError:
            return []
        return [obj["Key"].rsplit("/", 1)[-1] for obj in response.get("Contents", [])]


def backend_for(
    url: str, name: str, env: dict[str, str], *, timeout: float, verify: bool | str = True
):
    """A backend peeker for ``url``, or None when drctl cannot look inside it."""
    if url.startswith("s3:"):
        return S3Backend(url, name, env, timeout, verify)
    if ":" not in url.split("/")[0] or url.startswith("local:"):
        return LocalBackend(url, name)
    return None
