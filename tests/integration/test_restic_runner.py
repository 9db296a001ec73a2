"""The restic adapter against the real restic binary: local and S3 (moto) repositories,
typed errors, timeouts, drctl's repository lock queue and stale restic locks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drctl import config as config_mod
from drctl.errors import BackendUnreachable, RepositoryMissing, WrongPassword
from drctl.restic.runner import Restic
from tests.support.s3 import S3_KEY_ID, S3_SECRET


def make_restic(
    tmp_path: Path,
    url: str,
    *,
    password: str = "pw-local-1234",
    s3: bool = False,
    repository_timeout: str = "10s",
) -> Restic:
    tmp_path.mkdir(parents=True, exist_ok=True)
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    doc = {"url": url, "password": f"file:{pw}"}
    if s3:
        os.environ["DRCTL_T_KEY"], os.environ["DRCTL_T_SECRET"] = S3_KEY_ID, S3_SECRET
        doc.update(aws_access_key_id="env:DRCTL_T_KEY", aws_secret_access_key="env:DRCTL_T_SECRET")
    repo = config_mod.Repository.model_validate(doc)
    timeouts = config_mod.Timeouts(
        repository=repository_timeout, lock_wait="60s", restic_idle="60s"
    )
    return Restic("r", repo, state_dir=tmp_path / "state", timeouts=timeouts)


@pytest.fixture
def local_restic(tmp_path):
    restic = make_restic(tmp_path, str(tmp_path / "repo"))
    restic.init()
    return restic


def test_backup_snapshots_and_records_roundtrip(local_restic, tmp_path):
    src = tmp_path / "src"
    (src / "ab").mkdir(parents=True)
    (src / "ab" / "f1").write_bytes(os.urandom(5000))
    output, code, snap = local_restic.backup(src, host="site/node", tags=["drctl", "kind:storage"])
    assert code == 0 and output.summary.files_new == 1 and output.new_files == ["/ab/f1"]
    again, _, snap2 = local_restic.backup(src, host="site/node", tags=["drctl", "kind:storage"])
    assert again.summary.files_new == 0 and again.summary.files_unmodified == 1
    snaps = local_restic.snapshots(host="site/node")
    assert [x.id for x in snaps] == [snap.id, snap2.id]  # full IDs found without restic
    assert snaps[-1].parent == snaps[0].id  # incremental: same host and paths
    assert snap2.paths == snaps[-1].paths
    blob = bytes(range(256)) * 10 + b"\r\n\x00tail"
    record = local_restic.backup_bytes(
        blob, filename="drctl-test-n.bin", host="site/node", tags=["drctl", "kind:test"]
    )
    assert local_restic.dump(record.id, "/drctl-test-n.bin") == blob
    assert record.tag_value("kind") == "test"


def test_wrong_password_and_missing_repository(local_restic, tmp_path):
    wrong = make_restic(tmp_path / "other", local_restic.repo.url, password="not-it")
    with pytest.raises(WrongPassword) as err:
        wrong.open()
    assert err.value.exit_code == 3 and "repository r" in str(err.value)
    with pytest.raises(RepositoryMissing):
        make_restic(tmp_path / "x", str(tmp_path / "nothing-here")).open()


def test_s3_repository(moto_s3, tmp_path):
    restic = make_restic(tmp_path, moto_s3.repo_url(moto_s3.bucket()), s3=True)
    restic.init()
    restic.open()
    rec = restic.backup_bytes(b"hello", filename="f.txt", host="s/n")
    assert restic.dump(rec.id, "/f.txt") == b"hello"


def test_closed_port_fails_fast(tmp_path):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    closed = port.getsockname()[1]
    port.close()
    restic = make_restic(tmp_path, f"s3:http://127.0.0.1:{closed}/bucket/repo", s3=True)
    start = time.monotonic()
    with pytest.raises(BackendUnreachable) as err:
        restic.open()
    assert time.monotonic() - start < 10
    assert err.value.exit_code == 3


def test_stalled_endpoint_gives_up_within_the_timeout(tmp_path):
    """An endpoint that accepts connections and never answers (a hung proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        restic = make_restic(
            tmp_path,
            f"s3:http://127.0.0.1:{server.getsockname()[1]}/bucket/r",
            s3=True,
            repository_timeout="3s",
        )
        start = time.monotonic()
        with pytest.raises(BackendUnreachable):
            restic.open()
        assert time.monotonic() - start < 3 + 35  # timeout + restic's SIGINT grace
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_exclusive_operation_queues_instead_of_failing(local_restic, tmp_path):
    """Another drctl process holding the repository exclusively (a check) makes a backup
    wait for it instead of failing on restic's lock."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from drctl import locks\n"
            f"with locks.hold(Path({str(local_restic.lock_file)!r}), exclusive=True, timeout=5, "
            "what='t'):\n    print('held', flush=True); time.sleep(2)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    output, code, _ = local_restic.backup(src, host="s/n")
    holder.wait()
    assert code == 0 and output.summary.files_new == 1
    assert local_restic.waited_for_lock_s > 1.0


def test_check_and_backup_at_once_both_succeed(local_restic, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(2 * 2**20))
    local_restic.backup(src, host="s/n")
    errors: list[Exception] = []

    def check():
        try:
            local_restic.check("100%")
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for t in threads:
        t.start()
    (src / "g").write_bytes(os.urandom(2**20))
    output, code, _ = local_restic.backup(src, host="s/n")
    for t in threads:
        t.join()
    assert errors == [] and code == 0 and output.summary.files_new == 1


def test_stale_restic_lock_of_a_dead_process_is_removed(local_restic):
    """A SIGKILLed restic leaves its lock; drctl removes it because its holder (this host,
    that PID) is provably gone, and the next operation proceeds."""
    env, _ = local_restic.environment()
    # restic reading an empty pipe holds its lock until we kill it
    proc = subprocess.Popen(["restic", "backup", "--stdin", "--host", "s/n"],
                            env={**os.environ, **env}, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not local_restic.locks() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert local_restic.locks(), "restic took no lock"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert local_restic.locks()  # the lock survived its holder
    local_restic.check()  # exclusive: would fail on the stale lock
    assert not local_restic.locks()
