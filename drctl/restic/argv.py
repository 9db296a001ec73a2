"""Pure builders of restic argv lists. No I/O here: these are tested without restic.

The repository URL and every secret travel through the environment (see
:func:`drctl.restic.runner.restic_env`), never argv.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

RESTIC = "restic"

# Tags drctl puts on everything it writes; restic 0.14 cannot re-tag without changing the
# snapshot ID, so tags are chosen once, at backup time.
TAG_DRCTL = "drctl"


def tag(key: str, value: str) -> str:
    """A ``key:value`` tag. restic splits ``--tag`` on commas, so commas are refused."""
    if "," in key or "," in value:
        raise ValueError(f"tag {key}:{value} must not contain a comma")
    return f"{key}:{value}"


def restic_host(site: str, node: str) -> str:
    """The ``--host`` drctl uses for a node: restic finds the parent snapshot by host+paths."""
    return f"{site}/{node}"


def global_flags(
    *,
    cacert: str | None = None,
    insecure_tls: bool = False,
    json: bool = True,
    no_lock: bool = False,
    cache_dir: str | None = None,
) -> list[str]:
    flags = []
    if json:
        flags.append("--json")
    if cacert:
        flags += ["--cacert", cacert]
    if insecure_tls:
        flags.append("--insecure-tls")
    if no_lock:
        flags.append("--no-lock")
    if cache_dir:
        flags += ["--cache-dir", cache_dir]
    return flags


def init_argv(flags: Sequence[str] = ()) -> list[str]:
    return [RESTIC, *flags, "init"]


def cat_config_argv(flags: Sequence[str] = ()) -> list[str]:
    return [RESTIC, *flags, "cat", "config"]


def backup_argv(
    paths: Sequence[str],
    *,
    host: str,
    tags: Iterable[str] = (),
    excludes: Iterable[str] = (),
    verbose_files: bool = True,
    parent: str | None = None,
    flags: Sequence[str] = (),
) -> list[str]:
    """``restic backup`` of ``paths`` (relative paths, run from the source folder, restore
    without the absolute prefix). ``verbose_files`` adds per-file ``verbose_status``
    messages (new/modified/unchanged): the feed for the incremental manifest."""
    argv = [RESTIC, *flags, "backup", "--host", host]
    if verbose_files:
        argv.append("--verbose=2")
    for t in tags:
        argv += ["--tag", t]
    for pattern in excludes:
        argv += ["--exclude", pattern]
    if parent:
        argv += ["--parent", parent]
    argv.append("--")
    argv += list(paths)
    return argv


def backup_stdin_argv(
    filename: str, *, host: str, tags: Iterable[str] = (), flags: Sequence[str] = ()
) -> list[str]:
    """``restic backup --stdin``: drctl's own small records (manifests, index copies,
    verifications, reports, audit anchors)."""
    argv = [RESTIC, *flags, "backup", "--stdin", "--stdin-filename", filename, "--host", host]
    for t in tags:
        argv += ["--tag", t]
    return argv


def snapshots_argv(
    *,
    host: str | None = None,
    tags: Iterable[str] = (),
    ids: Sequence[str] = (),
    flags: Sequence[str] = (),
) -> list[str]:
    argv = [RESTIC, *flags, "snapshots"]
    if host:
        argv += ["--host", host]
    for t in tags:
        argv += ["--tag", t]
    argv += list(ids)
    return argv


def forget_argv(
    policy: Mapping[str, int | str | None],
    *,
    group_by: str = "host,paths",
    tags: Iterable[str] = (),
    dry_run: bool = False,
    prune: bool = False,
    flags: Sequence[str] = (),
) -> list[str]:
    """``restic forget`` with an explicit ``--group-by`` and the retention ``policy``
    (keys: last, hourly, daily, weekly, monthly, yearly, within)."""
    argv = [RESTIC, *flags, "forget", "--group-by", group_by]
    for key in ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within"):
        value = policy.get(key)
        if value is not None:
            argv += [f"--keep-{key}", str(value)]
    for t in tags:
        argv += ["--tag", t]
    if dry_run:
        argv.append("--dry-run")
    if prune:
        argv.append("--prune")
    return argv


def forget_ids_argv(
    ids: Sequence[str], *, prune: bool = True, flags: Sequence[str] = ()
) -> list[str]:
    """Forget exactly ``ids`` (the plan drctl approved) and prune."""
    argv = [RESTIC, *flags, "forget"]
    if prune:
        argv.append("--prune")
    argv.append("--")
    argv += list(ids)
    return argv


def check_argv(read_data_subset: str | None = None, *, flags: Sequence[str] = ()) -> list[str]:
    argv = [RESTIC, *flags, "check"]
    if read_data_subset:
        argv.append(f"--read-data-subset={read_data_subset}")
    return argv


def restore_argv(
    snapshot: str, target: str, *, includes: Iterable[str] = (), flags: Sequence[str] = ()
) -> list[str]:
    argv = [RESTIC, *flags, "restore", snapshot, "--target", target]
    for pattern in includes:
        argv += ["--include", pattern]
    return argv


def dump_argv(snapshot: str, path: str, *, flags: Sequence[str] = ()) -> list[str]:
    return [RESTIC, *flags, "dump", snapshot, path]


def list_argv(kind: str, *, flags: Sequence[str] = ()) -> list[str]:
    return [RESTIC, *flags, "list", kind]


def cat_argv(kind: str, object_id: str, *, flags: Sequence[str] = ()) -> list[str]:
    return [RESTIC, *flags, "cat", kind, object_id]


def unlock_argv(*, flags: Sequence[str] = ()) -> list[str]:
    """``restic unlock`` without --remove-all: restic removes only locks it considers stale
    (not refreshed for 30 minutes, or on this host with a dead PID)."""
    return [RESTIC, *flags, "unlock"]


def stats_argv(
    snapshot: str = "latest", *, mode: str = "restore-size", flags: Sequence[str] = ()
) -> list[str]:
    return [RESTIC, *flags, "stats", "--mode", mode, snapshot]


def version_argv() -> list[str]:
    return [RESTIC, "version"]


def rebuild_index_argv(*, flags: Sequence[str] = ()) -> list[str]:
    return [RESTIC, *flags, "rebuild-index"]
