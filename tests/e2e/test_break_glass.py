"""Issue 8 acceptance (break glass): the controller is lost with the primary. From an
empty home directory, with the recovery kit and the escrowed secrets only, a drctl
installed from the project rebuilds its catalog from the repository and brings a study
back into a node. The kit itself holds no secret."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.drctl_env import PHI_KEY, RESTIC_PASSWORD
from tests.support.scenarios import env_for, primary, study_public_id

ROOT = Path(__file__).resolve().parents[2]


def fresh_install(folder: Path) -> Path:
    """drctl installed (not editable) from the project into a new virtualenv. Its
    dependencies come from the test environment through a .pth line: no network."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    deps = Path(next(p for p in sys.path if p.endswith("site-packages")))
    site = next((folder / "lib").glob("python3*/site-packages"))
    (site / "drctl-test-deps.pth").write_text(f"{deps}\n")
    proc = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--no-deps", "--no-build-isolation", str(ROOT)],
                          timeout=600, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder / "bin" / "drctl"


def test_break_glass_from_an_empty_home(tmp_path):
    with primary(tmp_path, studies=4) as (node, archive):
        env = env_for(tmp_path, node, {"url": str(tmp_path / "repo")},
                      node={"vanished_alarm": 0.9})
        env.cli_json("repo", "init")
        env.cli_json("backup", "run")
        kit = tmp_path / "kit"
        written = env.cli_json("recovery-kit", "--out", str(kit))
        assert {"drctl.toml", "ESCROW.md", "README.md", "kit.json"} <= set(written["files"])
        assert any(f.startswith("runbooks/") for f in written["files"])
        for path in kit.rglob("*"):
            if path.is_file():
                text = path.read_bytes()
                assert RESTIC_PASSWORD.encode() not in text and PHI_KEY.encode() not in text
        escrow = (kit / "ESCROW.md").read_text()
        assert "repository.offsite.password" in escrow and "controller.phi_key" in escrow

        # the disaster: controller state and the study on the primary are gone
        shutil.rmtree(env.root / "state")
        victim = sorted(archive.study_uids)[1]
        node.rest.delete("studies", study_public_id(archive, victim))

        drctl = fresh_install(tmp_path / "new-venv")
        home = tmp_path / "empty-home"
        home.mkdir()
        clean_env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                     "DRCTL_CONFIG": str(kit / "drctl.toml")}

        def run(*args: str) -> dict:
            proc = subprocess.run([str(drctl), "--json", *args], capture_output=True, text=True,
                                  env=clean_env, timeout=600)
            assert "Traceback" not in proc.stderr
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
            return json.loads(proc.stdout)

        assert run("config", "check")["ok"]
        assert run("catalog", "rebuild")[0]["snapshots"] == 1
        assert [s["studies"] for s in run("snapshots", "list")] == [4]
        restored = run("restore", "study", victim, "--to", "primary")
        assert restored["studies"][0]["verified"] and restored["studies"][0]["instances"] == 4
        assert node.rest.get(f"/studies/{study_public_id(archive, victim)}")["ID"]
        assert (Path(drctl).parent.parent / "share" / "drctl" / "runbooks").is_dir()
