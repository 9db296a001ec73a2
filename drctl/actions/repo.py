"""``drctl repo init``: create the restic repository; for S3, check and prepare the bucket
(create it when missing, enable versioning, report Object Lock)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from drctl.actions.context import Context
from drctl.errors import RepositoryExists
from drctl.storage.s3 import BucketStatus, S3Bucket, parse_s3_url

log = logging.getLogger(__name__)


@dataclass
class InitResult:
    repository: str
    created: bool
    bucket: BucketStatus | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"repository": self.repository, "created": self.created,
                "bucket": self.bucket.to_json() if self.bucket else None,
                "warnings": self.warnings, "notes": self.notes}


def s3_bucket(ctx: Context, name: str, *, prune: bool = False) -> S3Bucket:
    repo = ctx.settings.repository[name]
    key_ref, secret_ref = repo.aws_access_key_id, repo.aws_secret_access_key
    if prune and repo.prune_credentials:
        key_ref = repo.prune_credentials.aws_access_key_id
        secret_ref = repo.prune_credentials.aws_secret_access_key
    return S3Bucket(parse_s3_url(repo.url),
                    key_id=key_ref.resolve() if key_ref else None,
                    secret=secret_ref.resolve() if secret_ref else None,
                    region=repo.aws_region,
                    timeout=min(ctx.settings.controller.timeouts.repository, 30.0),
                    verify=str(repo.cacert) if repo.cacert else not repo.insecure_tls)


def bucket_findings(status: BucketStatus) -> tuple[list[str], list[str]]:
    """(warnings, notes) about a bucket's protection against deletion."""
    if status.mutable:
        return (["the offsite copy is mutable: enable bucket versioning or Object Lock so "
                 "ransomware holding the backup keys cannot destroy it"], [])
    if not status.object_lock.startswith("Enabled"):
        return ([], ["versioning is enabled; Object Lock is not (a bucket created with Object "
                     "Lock makes the copy immutable for its retention period)"])
    return ([], [])


def init_repository(ctx: Context, name: str) -> InitResult:
    """Create repository ``name`` (idempotent: an existing one is opened and reported).
    Raises the typed restic errors (wrong password, unreachable: exit 3)."""
    repo = ctx.settings.repository[name]
    restic = ctx.restic(name)
    result = InitResult(name, created=False)
    with ctx.run("repo_init", repository=name) as run:
        if repo.is_s3:
            bucket = s3_bucket(ctx, name, prune=True)
            status = bucket.status()
            if not status.exists:
                bucket.create()
            if status.versioning != "Enabled":
                try:
                    bucket.enable_versioning()
                except Exception as exc:  # botocore ClientError: permission denied
                    result.warnings.append(f"could not enable bucket versioning: {exc}")
            result.bucket = bucket.status()
            warnings, notes = bucket_findings(result.bucket)
            result.warnings += warnings
            result.notes += notes
        try:
            restic.init()
            result.created = True
        except RepositoryExists:
            restic.open()  # proves the password works
        run.details.update(result.to_json())
        if result.warnings:
            run.finish("warning", "; ".join(result.warnings))
    return result
