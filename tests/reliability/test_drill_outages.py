"""Drills meeting trouble, through the real CLI:

- the restored node dies in the middle of the drill (its Orthanc is SIGKILLed at the
  drill's first C-FIND, by an ``Orthanc`` wrapper first on the drill's PATH): the drill is
  recorded failed with ``standby_unreachable``;
- a drill starts while a backup holds the repository: its ``restic check`` queues behind
  drctl's repository lock and neither fails.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.reliability import faults
from tests.support.drills import BackedUp, backed_up_primary

pytestmark = pytest.mark.xdist_group("reliability-drill")  # one primary per worker run

# The sandbox's Orthanc, verbose, killed (SIGKILL) at the first C-FIND it receives.
DYING_ORTHANC = """\
import os, signal, subprocess, sys
args = sys.argv[1:]
if "--version" in args or "--help" in args:
    os.execv("/usr/sbin/Orthanc", ["Orthanc", *args])
proc = subprocess.Popen(["/usr/sbin/Orthanc", "--verbose", *args], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
marker = os.environ["FAULT_MARKER"]
for line in proc.stdout:
    sys.stdout.buffer.write(line)
    sys.stdout.flush()
    if b"C-Find request" in line and not os.path.exists(marker):
        proc.kill()
        open(marker, "w").close()
sys.exit(proc.wait())
"""


@pytest.fixture(scope="module")
def backed(tmp_path_factory):
    with backed_up_primary(tmp_path_factory.mktemp("drill-outages"), studies=4) as site:
        yield site


def test_restored_node_killed_mid_drill_fails_the_drill(backed: BackedUp, tmp_path):
    folder = tmp_path / "bin"
    faults.install(folder, "Orthanc", DYING_ORTHANC)
    marker = tmp_path / "killed"
    extra = {"PATH": f"{folder}:{os.environ['PATH']}", "FAULT_MARKER": str(marker)}
    proc = backed.env.cli("drill", "run", "--full", check_exit=None, extra_env=extra)
    assert marker.exists(), "the sandbox was never killed"
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "failed" and result["findings"]
    assert result["studies_verified"] < result["studies_expected"]
    shown = backed.env.cli_json("drill", "show", str(result["drill_id"]))
    assert shown["state"] == "failed"
    snapshots = backed.env.cli_json("snapshots", "list")
    assert not snapshots[-1]["verified"]
    assert not any((backed.root / "sandbox").iterdir())  # cleaned up all the same
    kinds = {f["kind"] for f in result["findings"]}
    assert "standby_unreachable" in kinds, sorted(kinds)


def test_drill_check_queues_behind_a_running_backup(backed: BackedUp, tmp_path):
    env = backed.env
    fault = faults.fault_env(tmp_path / "bin", "hold")
    backup = faults.spawn(env, "backup", "run", extra_env=fault)
    drill, lines = None, []
    try:
        faults.wait_for(Path(fault["FAULT_MARKER"]).exists, backup, what="the backup's upload")
        drill = faults.spawn(env, "-v", "drill", "run")
        reader = threading.Thread(
            target=lambda: lines.extend(iter(drill.stderr.readline, b"")), daemon=True
        )
        reader.start()
        faults.wait_for(
            lambda: any(b"queued" in line for line in lines),
            drill,
            timeout=180,
            what="the drill's check queueing",
        )
        held_at = time.monotonic()
        time.sleep(2)  # the backup keeps the repository a little longer
    finally:
        Path(fault["FAULT_RELEASE"]).touch()
    out, err = backup.communicate(timeout=180)
    assert backup.returncode == 0, err.decode()
    assert json.loads(out)["state"] == "succeeded"
    assert drill is not None
    out = drill.stdout.read()
    assert drill.wait(300) == 0, (out.decode()[-2000:], b"".join(lines).decode()[-3000:])
    reader.join(10)
    result = json.loads(out)
    assert result["state"] == "passed", result
    report = json.loads(Path(result["report"]).with_suffix(".json").read_text())
    check = report["phases"]["check"]
    assert check["ok"] and check["waited_s"] >= 2, check
    print(
        f"drill check queued {check['waited_s']:.1f}s behind the backup "
        f"(released {time.monotonic() - held_at:.1f}s ago)"
    )
    runs = [r for r in faults.runs(env) if r["kind"] in ("backup", "check", "drill")]
    assert all(r["state"] == "succeeded" for r in runs[-3:]), runs
