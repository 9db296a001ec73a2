"""``drctl doctor``: is this controller able to do its job? One line per check: tools and
versions, secrets resolvable and not exposed, catalog writable, repositories reachable
(and, for S3, protected against deletion), every node answering C-ECHO."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drctl import config as config_mod
from drctl import execute
from drctl.actions.context import Context
from drctl.catalog.models import Setting
from drctl.errors import DrctlError
from drctl.pacs.base import pacs_node
from drctl.restic.runner import restic_version
from drctl.secrets import SecretUnavailable

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    check: str
    status: str
    detail: str

    def to_json(self) -> dict:
        return {"check": self.check, "status": self.status, "detail": self.detail}


def _probe(name: str, fn: Callable[[], tuple[str, str]]) -> Check:
    try:
        status, detail = fn()
    except DrctlError as exc:
        status, detail = FAIL, str(exc)
    except Exception as exc:  # a check must never crash the doctor
        status, detail = FAIL, f"{type(exc).__name__}: {exc}"
    return Check(name, status, detail)


def run_doctor(ctx: Context) -> list[Check]:
    """Every check, in order; never raises for a failing check."""
    s = ctx.settings
    checks = [_probe("restic", lambda: (OK, restic_version().text))]
    if any(n.index_kind == "postgresql" for n in s.node.values()):
        checks.append(_probe("pg_dump", lambda: _tool(["pg_dump", "--version"])))
    if s.drill.mode == "sandbox":
        checks.append(_probe("orthanc (sandbox drills)", lambda: _tool(["Orthanc", "--version"])))
    checks.append(_probe("config file", lambda: _permissions(Path(s.source))))
    for ref in config_mod.secret_refs(s):
        checks.append(_probe(f"secret {ref.key}", lambda ref=ref: _secret(ref)))
    checks.append(_probe("catalog", lambda: _catalog(ctx)))
    for name in s.repository:
        checks.append(_probe(f"repository {name}", lambda name=name: _repository(ctx, name)))
    for name, node in s.node.items():
        checks.append(_probe(f"node {name}", lambda name=name, node=node: _node(ctx, name, node)))
    return checks


def _tool(argv: list[str]) -> tuple[str, str]:
    result = execute.run(argv, timeout=30)
    text = (result.stdout or result.stderr_text).strip().splitlines()
    return (OK if result.returncode == 0 else FAIL, text[0] if text else f"exit {result.returncode}")


def _permissions(path: Path) -> tuple[str, str]:
    exposure = config_mod.file_exposure(path)
    if exposure:
        return FAIL, exposure
    return OK, f"{path} (mode {stat.S_IMODE(os.stat(path).st_mode):04o})"


def _secret(ref) -> tuple[str, str]:
    try:
        ref.resolve()
    except SecretUnavailable as exc:
        return FAIL, str(exc)
    exposure = ref.exposure()
    if exposure:
        return FAIL, exposure
    return OK, f"{ref} resolves"


def _catalog(ctx: Context) -> tuple[str, str]:
    key = f"doctor:{os.getpid()}"
    with ctx.catalog.session() as session:
        session.merge(Setting(key=key, value=datetime.now(UTC).isoformat()))
    with ctx.catalog.session() as session:
        row = session.get(Setting, key)
        if row is not None:
            session.delete(row)
    return OK, f"{ctx.catalog.where} writable"


def _repository(ctx: Context, name: str) -> tuple[str, str]:
    started = time.monotonic()
    ctx.restic(name).open()
    detail = f"reachable, password works ({time.monotonic() - started:.1f}s)"
    repo = ctx.settings.repository[name]
    warnings = []
    if repo.insecure_tls and not repo.cacert:
        warnings.append("insecure_tls: the storage's TLS certificate is not verified (anyone "
                        "on the path can pose as it); configure cacert instead")
    if repo.is_s3:
        from drctl.actions.repo import bucket_findings, s3_bucket

        bucket = s3_bucket(ctx, name)
        status = bucket.status()
        warnings += bucket_findings(status)[0]
        detail += f"; bucket versioning {status.versioning}, object lock {status.object_lock}"
        if status.exists and bucket.deletes_beyond_locks():
            warnings.append("the backup credentials can delete objects: ransomware on this "
                            "controller could destroy the offsite copy; give them a policy "
                            "without s3:DeleteObject (except on locks/) and give prune its "
                            "own prune_credentials")
    if warnings:
        return WARN, detail + "; " + "; ".join(warnings)
    return OK, detail


def _node(ctx: Context, name: str, node) -> tuple[str, str]:
    rtt = pacs_node(ctx.settings, name).echo()
    return OK, f"C-ECHO {node.aet}@{node.host}:{node.port} in {rtt * 1000:.0f} ms (agent {node.agent})"
