"""``drctl check``: repository integrity (``restic check``), recorded in the catalog.

With a rotating subset ``n/N`` configured (``check_read_subset = "1/28"``), each check
reads the next slice of the pack files, so N checks read every pack once; the position is
kept in the catalog. A percentage (``--read-data-subset 5%``) reads a random share.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from drctl.actions.context import Context
from drctl.catalog.models import Setting
from drctl.errors import RepositoryDamaged


@dataclass
class CheckResult:
    repository: str
    subset: str | None
    ok: bool
    duration_s: float
    run_id: int
    error: str | None = None
    waited_s: float = 0.0

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "repository": self.repository,
            "subset": self.subset,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "state": "succeeded" if self.ok else "failed",
        }


def next_subset(configured: str, last: int | None) -> tuple[str, int | None]:
    """The subset to read now and the position to remember. ``n/N`` rotates 1..N."""
    m = re.fullmatch(r"(\d+)/(\d+)", configured)
    if not m:
        return configured, None
    total = int(m.group(2))
    position = (last % total) + 1 if last else 1
    return f"{position}/{total}", position


def _setting_key(repository: str) -> str:
    return f"check_position:{repository}"


def run_check(ctx: Context, repository: str, *, read_data_subset: str | None = None) -> CheckResult:
    """Run ``restic check`` on ``repository`` (queued behind drctl's other operations on it).
    Damage is recorded and returned (ok=False), not raised; unreachable repositories raise."""
    repo = ctx.settings.repository.get(repository)
    restic = ctx.restic(repository)
    position = None
    if read_data_subset is None and repo is not None:
        with ctx.catalog.session() as s:
            row = s.get(Setting, _setting_key(repository))
            last = int(row.value) if row else None
        read_data_subset, position = next_subset(repo.check_read_subset, last)
    with ctx.run("check", repository=repository, details={"subset": read_data_subset}) as run:
        start = time.monotonic()
        restic.probe()
        try:
            restic.check(read_data_subset)
            ok, error = True, None
        except RepositoryDamaged as exc:
            ok, error = False, str(exc)
            run.finish("failed", error)
        duration = time.monotonic() - start
        run.details.update(
            {
                "ok": ok,
                "duration_s": round(duration, 3),
                "waited_for_lock_s": round(restic.waited_for_lock_s, 3),
            }
        )
        if position is not None:
            with ctx.catalog.session() as s:
                s.merge(Setting(key=_setting_key(repository), value=str(position)))
    return CheckResult(
        repository, read_data_subset, ok, duration, run.id, error, restic.waited_for_lock_s
    )
