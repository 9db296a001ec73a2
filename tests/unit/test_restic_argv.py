"""restic argv builders: pure, no secrets, explicit group-by, fixed host."""

from __future__ import annotations

import pytest

from drctl.restic import argv as A


def test_backup_argv_host_tags_excludes_and_no_secrets():
    argv = A.backup_argv(
        ["."],
        host=A.restic_host("site", "pacs"),
        tags=["drctl", "kind:storage"],
        excludes=["/data/index", "/data/index-wal"],
        flags=["--json"],
    )
    assert argv[:3] == ["restic", "--json", "backup"]
    assert argv[argv.index("--host") + 1] == "site/pacs"
    assert "--verbose=2" in argv
    assert argv.count("--exclude") == 2 and argv.count("--tag") == 2
    assert argv[-2:] == ["--", "."]
    joined = " ".join(argv)
    assert "password" not in joined and "s3:" not in joined


def test_forget_is_explicit_about_grouping():
    argv = A.forget_argv(
        {"daily": 7, "weekly": 5, "last": None},
        group_by="host,paths",
        tags=["drctl,kind:storage"],
        dry_run=True,
    )
    assert argv[argv.index("--group-by") + 1] == "host,paths"
    assert ["--keep-daily", "7"] == argv[
        argv.index("--keep-daily") : argv.index("--keep-daily") + 2
    ]
    assert "--keep-last" not in argv and "--dry-run" in argv and "--prune" not in argv


def test_forget_ids_prunes_exactly_the_plan():
    assert A.forget_ids_argv(["a" * 64, "b" * 64]) == [
        "restic",
        "forget",
        "--prune",
        "--",
        "a" * 64,
        "b" * 64,
    ]


def test_check_subset_and_stdin_records():
    assert A.check_argv("3/28")[-1] == "--read-data-subset=3/28"
    argv = A.backup_stdin_argv("drctl-manifest-n.json", host="s/n", tags=["kind:manifest"])
    assert argv[argv.index("--stdin-filename") + 1] == "drctl-manifest-n.json"


def test_tags_refuse_commas():
    with pytest.raises(ValueError):
        A.tag("node", "a,b")
