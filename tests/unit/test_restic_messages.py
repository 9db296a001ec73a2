"""Parsing restic 0.14 output and mapping its failures (texts captured from restic 0.14)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drctl import errors
from drctl.restic.messages import (
    BackupOutput,
    BackupStatus,
    BackupSummary,
    FileAction,
    classify,
    collect,
    parse_forget,
    parse_line,
    parse_snapshots,
    parse_time,
)

SUMMARY = (
    '{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,'
    '"dirs_new":1,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":2,'
    '"data_added":1052,"total_files_processed":2,"total_bytes_processed":12,'
    '"total_duration":0.211,"snapshot_id":"a82134bf"}'
)


def test_backup_stream_is_folded():
    out = BackupOutput()
    for line in [
        '{"message_type":"status","percent_done":0.5,"total_files":2,"files_done":1,'
        '"total_bytes":12,"bytes_done":6}',
        '{"message_type":"verbose_status","action":"new","item":"/ab/cd/f1","data_size":6}',
        '{"message_type":"verbose_status","action":"modified","item":"/ef/01/f2","data_size":6}',
        '{"message_type":"verbose_status","action":"unchanged","item":"/f3","data_size":0}',
        '{"message_type":"verbose_status","action":"new","item":"/ab/","data_size":0}',
        '{"message_type":"status","action":"scan_finished","item":"","total_files":2}',
        "not json at all",
        SUMMARY,
    ]:
        collect(out, parse_line(line))
    assert out.new_files == ["/ab/cd/f1"] and out.modified_files == ["/ef/01/f2"]
    assert isinstance(out.last_status, BackupStatus) and out.last_status.bytes_done == 6
    assert out.summary == BackupSummary("a82134bf", 2, 0, 0, 1052, 2, 12, 0.211)
    assert isinstance(
        parse_line('{"message_type":"verbose_status","action":"new","item":"/x"}'), FileAction
    )


def test_error_messages_and_times():
    err = parse_line(
        '{"message_type":"error","error":{"Op":"open","Path":"/x","Err":13},'
        '"during":"archival","item":"/x"}'
    )
    assert err.item == "/x" and "open /x" in err.message
    assert parse_time("2026-11-29T04:34:06.614456844Z") == datetime(
        2026, 11, 29, 4, 34, 6, 614456, tzinfo=UTC
    )


def test_snapshots_and_forget_plans_parse():
    snaps = parse_snapshots(
        '[{"time":"2026-11-29T04:34:07.2Z","paths":["/d"],"hostname":"s/n",'
        '"tags":["drctl","node:n"],"id":"' + "f" * 64 + '","short_id":"ffffffff"}]'
    )
    assert snaps[0].tag_value("node") == "n" and snaps[0].hostname == "s/n"
    plan = parse_forget('[{"tags":null,"host":"s/n","paths":["/d"],"keep":[],"remove":[]}]')
    assert plan[0].host == "s/n" and plan[0].remove == ()


@pytest.mark.parametrize(
    "code,stderr,kind",
    [
        (1, "Fatal: wrong password or no key found", errors.WrongPassword),
        (12, "", errors.WrongPassword),
        (
            1,
            "unable to create lock in backend: repository is already locked by PID 7829 on vm by "
            "root (UID 0, GID 0)\nlock was created at 2026-11-29 04:34:23",
            errors.RepositoryLocked,
        ),
        (
            1,
            "Fatal: unable to open config file: stat /r/config: no such file or directory\n"
            "Is there a repository at the following location?\n/r",
            errors.RepositoryMissing,
        ),
        (
            1,
            'Fatal: unable to open config file: Stat: Get "http://127.0.0.1:1/b/?location=": dial tcp '
            "127.0.0.1:1: connect: connection refused",
            errors.BackendUnreachable,
        ),
        (
            1,
            "Fatal: unable to open config file: Stat: The specified bucket does not exist",
            errors.RepositoryMissing,
        ),
        (
            1,
            "Fatal: create repository at /r failed: config file already exists",
            errors.RepositoryExists,
        ),
        (3, "Warning: at least one source file could not be read", errors.SourceUnreadable),
    ],
)
def test_classify_maps_codes_and_messages(code, stderr, kind):
    error = classify(code, stderr, repository="offsite", action="backup")
    assert type(error) is kind
    if isinstance(error, errors.RepositoryError):
        assert "offsite" in str(error)


def test_classify_check_damage_is_a_finding_not_unavailable():
    error = classify(
        1,
        "error: pack abc: not referenced in any index\nFatal: repository contains errors",
        repository="r",
        action="check",
    )
    assert isinstance(error, errors.RepositoryDamaged) and error.exit_code == 1
    assert classify(0, "", repository="r", action="check") is None


def test_locked_message_names_holder():
    error = classify(
        1,
        "repository is already locked exclusively by PID 12 on host7 by root (UID 0, GID 0)",
        repository="r",
        action="backup",
    )
    assert "PID 12 on host7" in str(error)
