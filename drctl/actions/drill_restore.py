"""The restore step of a drill: a restored node (sandbox or standby) from the PACS
registry, the storage tree (every file, or the sampled studies' files) and the index copy
restored into it, installed. restic 0.14 prints no restore progress, so the target's
growth keeps restic's idle clock honest and feeds the progress bar; the throughput
measured here projects a partial drill's RTO to the whole archive."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from drctl.actions.context import Context
from drctl.drill.findings import RESTORE_FAILED, Finding
from drctl.errors import DrctlError, Interrupted
from drctl.pacs.base import pacs_node
from drctl.pacs.restored import RestoreOptions
from drctl.verify.records import record_filename

if TYPE_CHECKING:
    from drctl.actions.drill_steps import DrillState


def restore_options(ctx: Context, workdir: Path) -> RestoreOptions:
    drill = ctx.settings.drill
    password = drill.sandbox_postgres_password
    return RestoreOptions(
        workdir=workdir,
        controller_aet=ctx.settings.controller.aet,
        start_timeout=ctx.settings.controller.timeouts.node_start,
        postgres=drill.sandbox_postgres,
        postgres_password=password.resolve() if password else None,
        http_port=drill.sandbox_http_port,
    )


def work_dir(ctx: Context, drill_id: int, target: str) -> Path:
    """A folder of this drill's own: the sandbox itself, or a standby's staging."""
    state_dir = ctx.settings.controller.state_dir
    base = (
        (ctx.settings.drill.sandbox_dir or state_dir / "sandbox")
        if target == "sandbox"
        else state_dir / "drill-work"
    )
    return base / f"{ctx.site}-drill-{drill_id}-{os.getpid()}"


def restore(state: DrillState) -> bool:
    """Restore storage (all files, or the sampled studies' files) and the index copy,
    and install them. False (and a ``restore_failed`` finding) when that fails."""
    assert state.plan is not None
    state.progress("restore")
    with state.clock.phase("restore") as detail:
        try:
            _restore(state, detail)
        except (Interrupted, KeyboardInterrupt):
            raise
        except (DrctlError, OSError) as exc:
            state.clock.fail("restore")
            detail["error"] = describe(exc)
            state.findings.append(Finding(RESTORE_FAILED, None, describe(exc), "restore"))
            return False
    return True


def _restore(state: DrillState, detail: dict) -> None:
    ctx, plan_ = state.ctx, state.plan
    assert plan_ is not None
    if state.copy is None:
        raise DrctlError(
            f"snapshot {state.snapshot.short_id} has no paired index copy in the "
            "catalog; it cannot be restored as a working node"
        )
    options = restore_options(ctx, work_dir(ctx, state.drill_id, state.target))
    if state.target == "sandbox":
        state.node = pacs_node(ctx.settings, state.primary).sandbox(options)
    else:
        state.node = pacs_node(ctx.settings, state.target).standby_restore(options)
    paths: list[str] = []
    index_bytes = 0
    if plan_.scope == "partial":  # a sandbox: the index first, to learn every file to restore
        index_bytes = _install_index(state)
        chosen = state.instances_of(plan_.sampled_studies)
        paths = state.node.restore_paths([i.path for i in chosen])
        expected = sum(i.size for i in chosen)
    else:
        expected = state.snapshot.total_bytes or 0
    started = time.monotonic()
    if paths or plan_.scope == "full":
        state.restic.restore(
            state.snapshot.snapshot_id,
            state.node.restore_dir,
            includes=["/" + p for p in paths],
            watch=_growth(state.node.restore_dir, expected, state),
        )
    state.restore_s = time.monotonic() - started
    state.restored_bytes = _size(state.node.restore_dir, paths) if paths else expected
    if plan_.scope == "full":
        index_bytes = _install_index(state)
    detail.update(
        {
            "scope": plan_.scope,
            "bytes": state.restored_bytes,
            "files_included": len(paths) or None,
            "restic_s": round(state.restore_s, 3),
            "index_bytes": index_bytes,
            "throughput_bps": round(state.restored_bytes / state.restore_s)
            if state.restore_s > 0
            else None,
        }
    )


def _install_index(state: DrillState) -> int:
    """Download the paired index copy and install it; returns its size."""
    kind = state.copy.kind
    suffix = "sqlite" if kind == "sqlite" else "dump"
    index_file = state.node.index_download(kind)
    state.restic.dump_to(
        state.copy.record_id, "/" + record_filename("index", state.primary, suffix), index_file
    )
    size = index_file.stat().st_size
    state.node.install()
    return size


def _size(folder: Path, paths: list[str]) -> int:
    """Bytes restored at ``paths`` under ``folder`` (a missing file counts nothing)."""
    total = 0
    for path in paths:
        try:
            total += os.stat(folder / path).st_size
        except OSError:
            continue
    return total


def _growth(folder: Path, total: int, state: DrillState) -> Callable[[], bool]:
    """A ``watch`` for restic restore (0.14 prints no progress): True when the target's
    filesystem grew since the last call; also feeds the progress bar."""

    def used() -> int:
        st = os.statvfs(folder)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    first = last = used()

    def watch() -> bool:
        nonlocal last
        now = used()
        grew, last = now != last, now
        state.progress("restore", max(0, now - first), total or None)
        return grew

    return watch


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DrctlError) else f"{type(exc).__name__}: {exc}"
