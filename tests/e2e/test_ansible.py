"""Ansible provisioning (ansible/), tested like real roles: the example inventory passes a
syntax check (never run against its hosts), ansible-lint is clean offline, and site.yml
converges localhost (connection local) into a temporary prefix with service management
off: a second converge changes nothing, no secret value leaks into a diff, a template or
the repository, and the provisioned drctl drills the provisioned standby Orthanc after a
backup of a real primary.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from drctl.net import free_port
from drctl.pacs.orthanc.nodeconfig import OrthancSpec, PostgresIndexSpec, render
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, create_database, drop_database
from tests.support.scenarios import primary

# two converges and a drill: minutes on a busy 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ansible"), pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)
STANDBY = "standby"
STUDIES = 4


def ansible_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
    }


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters of localhost."""
    found = [m for m in RECAP.finditer(output) if m.group("host") == "localhost"]
    assert found, f"no PLAY RECAP for localhost in:\n{output[-3000:]}"
    return {k: int(v) for k, v in found[-1].groupdict().items() if k != "host"}


def copy_source(target: Path) -> Path:
    """drctl's source as a release would hold it (pyproject.toml, README.md, drctl/):
    installed from a folder, as the role's path source."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    shutil.copytree(
        REPO / "drctl", target / "drctl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


@dataclass
class Site:
    root: Path
    prefix: Path
    secrets: dict[str, str]
    runs: list[subprocess.CompletedProcess]
    durations: list[float]
    standby_db: str
    standby_ports: tuple[int, int]
    primary_node: object

    @property
    def config(self) -> Path:
        return self.prefix / "etc/drctl/drctl.toml"

    @property
    def drctl(self) -> Path:
        return self.prefix / "opt/drctl/venv/bin/drctl"

    @property
    def orthanc_config(self) -> Path:
        return self.prefix / "etc/orthanc-standby/orthanc.json"

    @property
    def doc(self) -> dict:
        return tomllib.loads(self.config.read_text())

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """The provisioned drctl with the provisioned config, as the scheduler would run it."""
        proc = subprocess.run(
            [str(self.drctl), "--config", str(self.config), "--json", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


def test_playbook_syntax_with_example_inventory(tmp_path):
    """Only --syntax-check with the example inventory: its hosts are never contacted."""
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(ANSIBLE / "inventory/example.yml"),
            str(ANSIBLE / "site.yml"),
            "--syntax-check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=ansible_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_is_clean_offline():
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "ansible/"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Profile 'production' was required, and it passed" in out, out


SECRET_NAME = re.compile(r"(password|pass|_secret_access_key|_key|[.]key|_key_id|webhook_url)$")
# a value from Ansible Vault, or a drctl secret reference (env:, file:, command:)
REFERENCE = re.compile(r"^(\{\{ vault_[a-z0-9_]+ \}\}|(env|file|command):.+)$")


def _secret_settings(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and SECRET_NAME.search(str(key)):
                yield "/".join(map(str, (*path, key))), value
            else:
                yield from _secret_settings(value, (*path, key))


def test_secret_variables_hold_no_values():
    """Every secret variable in ansible/ is empty (role defaults), a vault reference
    (example inventory) or a drctl secret reference: secrets live in Ansible Vault, never
    in the repository."""
    seen = 0
    for path in sorted(ANSIBLE.rglob("*.yml")):
        for where, value in _secret_settings(yaml.safe_load(path.read_text()) or {}):
            seen += 1
            assert value == "" or REFERENCE.match(value), (path, where, value)
    assert seen >= 10


def test_package_check_mode_needs_no_package_manager(tmp_path):
    """packages_mode "check" asks dpkg only: passes when the packages are installed (this
    machine has them), fails naming the missing ones otherwise."""
    playbook = tmp_path / "packages.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Packages",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": role,
                            "ansible.builtin.include_role": {
                                "name": role,
                                "tasks_from": "packages.yml",
                            },
                        }
                        for role in ("pacs_standby", "drctl_controller")
                    ],
                }
            ]
        )
    )

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                f"ansible_python_interpreter={sys.executable}",
                "-e",
                "pacs_standby_packages_mode=check",
                "-e",
                "drctl_controller_packages_mode=check",
                "-e",
                '{"pacs_standby_index": "postgresql", "pacs_standby_manage_service": false}',
                *extra,
                str(playbook),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env={**ansible_env(tmp_path / "home"), "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")},
        )

    present = run()
    assert present.returncode == 0, present.stdout + present.stderr
    assert recap(present.stdout)["changed"] == 0
    missing = run("-e", '{"drctl_controller_packages": ["restic", "drctl-no-such-package"]}')
    assert missing.returncode != 0
    assert "Not installed: drctl-no-such-package." in missing.stdout


def test_example_inventory_renders_a_valid_drctl_config(tmp_path):
    """The example inventory's values, rendered by the roles' own tasks on localhost (the
    example hosts are never contacted), make a drctl.toml that drctl accepts."""
    from drctl import config as config_mod

    example = ANSIBLE / "inventory/group_vars"
    vault = {
        name: f"vault-value-{name}"
        for name in re.findall(
            r"\{\{ (vault_[a-z0-9_]+) \}\}",
            "".join(p.read_text() for p in example.rglob("*.yml")),
        )
    }
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render drctl.toml from the example inventory",
                    "hosts": "localhost",
                    "gather_facts": True,
                    "gather_subset": ["min"],
                    "vars_files": [
                        str(example / "all/main.yml"),
                        str(example / "standby.yml"),
                    ],
                    "vars": vault,
                    "tasks": [
                        {
                            "name": "Standby node",
                            "ansible.builtin.include_role": {
                                "name": "pacs_standby",
                                "tasks_from": "publish.yml",
                            },
                        },
                        {
                            "name": "Folder",
                            "ansible.builtin.file": {
                                "path": str(tmp_path / "etc/drctl"),
                                "state": "directory",
                                "mode": "0750",
                            },
                        },
                        {
                            "name": "drctl.toml",
                            "ansible.builtin.include_role": {
                                "name": "drctl_controller",
                                "tasks_from": "config.yml",
                            },
                        },
                    ],
                }
            ]
        )
    )
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "standby": {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": sys.executable,
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    overrides = {
        "ansible_become": False,
        "drctl_controller_prefix": str(tmp_path),
        "drctl_controller_group": _group_name(),
        "drctl_controller_check_on_change": False,
        "drctl_controller_manage_services": False,
    }
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            json.dumps(overrides),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**ansible_env(tmp_path / "home"), "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    rendered = tmp_path / "etc/drctl/drctl.toml"
    settings = config_mod.load(rendered)
    assert not any(value in rendered.read_text() for value in vault.values())
    assert set(settings.node) == {"primary", "standby"}
    standby = settings.node["standby"]
    assert standby.role == "standby" and standby.primary == "primary"
    assert standby.replication == "dump"
    assert standby.start == ("sudo", "-n", "systemctl", "start", "orthanc")
    etc = rendered.parent  # /etc/drctl under the prefix
    assert str(standby.index_password) == f"file:{etc}/index-standby.pass"
    assert str(standby.rest_password) == f"file:{etc}/rest-standby.pass"
    repo = settings.repository["offsite"]
    assert str(repo.password) == f"file:{etc}/restic.pass"
    assert str(repo.prune_credentials.aws_secret_access_key) == f"file:{etc}/s3-prune.key"
    assert str(settings.notify.email.password) == f"file:{etc}/smtp.pass"
    assert settings.drill.mode == "standby" and settings.schedule.drill == "cron:0 2 * * SAT"


@pytest.fixture(scope="module")
def site(tmp_path_factory, moto_s3):
    root = tmp_path_factory.mktemp("ansible-site")
    prefix = root / "prefix"
    src = copy_source(root / "src")
    secret = {
        name: f"{name}-{secrets.token_hex(12)}"
        for name in ("restic", "phi", "s3id", "s3key", "pruneid", "prunekey", "primaryindex")
    }
    user, group = getpass.getuser(), _group_name()
    bucket = moto_s3.bucket()
    with contextlib.ExitStack() as stack:
        pacs, _archive = stack.enter_context(primary(root / "primary", studies=STUDIES))
        standby_db = create_database("drctl_standby")
        for suffix in ("", "_drctl_new", "_drctl_old"):
            stack.callback(drop_database, standby_db + suffix)
        dicom_port, http_port = free_port(), free_port()
        host_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            # everything under the prefix, no systemd, no account creation
            "pacs_standby_prefix": str(prefix),
            "drctl_controller_prefix": str(prefix),
            "pacs_standby_manage_service": False,
            "drctl_controller_manage_services": False,
            "drctl_controller_manage_user": False,
            "pacs_standby_user": user,
            "pacs_standby_group": group,
            "drctl_controller_user": user,
            "drctl_controller_group": group,
            # the standby node
            "pacs_standby_address": "127.0.0.1",
            "pacs_standby_dicom_port": dicom_port,
            "pacs_standby_http_port": http_port,
            "pacs_standby_stable_age": 1,
            "pacs_standby_index": "postgresql",
            "pacs_standby_postgresql": {
                "host": PG_HOST,
                "port": PG_PORT,
                "database": standby_db,
                "user": PG_USER,
            },
            # drctl from this checkout, offline: the test venv's packages, no build isolation
            "drctl_controller_python": sys.executable,
            "drctl_controller_venv_args": ["--without-pip"],
            "drctl_controller_venv_site_dirs": [_site_packages(), "/usr/lib/python3/dist-packages"],
            "drctl_controller_source": str(src),
            "drctl_controller_pip_args": ["--no-deps", "--no-build-isolation", "--no-index"],
            # drctl.toml
            "drctl_controller_site": "ansible-test",
            "drctl_controller_settings": {
                "timeouts": {
                    "dicom": "20s",
                    "node_start": "60s",
                    "repository": "30s",
                    "lock_wait": "120s",
                }
            },
            "drctl_controller_repositories": {
                "offsite": {"url": moto_s3.repo_url(bucket), "aws_region": "us-east-1"}
            },
            "drctl_controller_nodes": {
                "primary": pacs.node_table(
                    repository="offsite",
                    index_password=f"file:{prefix}/etc/drctl/primary-index.pass",
                )
            },
            "drctl_controller_schedule": {"backup": "cron:0 */4 * * *", "drill": "off"},
            "drctl_controller_drill": {"mode": STANDBY, "sample_instances": 8},
            # secrets (Ansible Vault in production)
            "drctl_controller_restic_password": secret["restic"],
            "drctl_controller_phi_key": secret["phi"],
            "drctl_controller_s3_access_key_id": secret["s3id"],
            "drctl_controller_s3_secret_access_key": secret["s3key"],
            "drctl_controller_prune_s3_access_key_id": secret["pruneid"],
            "drctl_controller_prune_s3_secret_access_key": secret["prunekey"],
            "drctl_controller_extra_secrets": {"primary-index.pass": secret["primaryindex"]},
        }
        inventory = root / "inventory.yml"
        inventory.write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "children": {
                            "primary": {"hosts": {"localhost": host_vars}},
                            "standby": {"hosts": {"localhost": None}},
                            "controller": {"hosts": {"localhost": None}},
                        }
                    }
                }
            )
        )
        site = Site(root, prefix, secret, [], [], standby_db, (dicom_port, http_port), pacs)
        stack.callback(_stop_standby, site)
        for _ in range(2):
            started = time.monotonic()
            site.runs.append(
                subprocess.run(
                    [
                        str(VENV_BIN / "ansible-playbook"),
                        "-i",
                        str(inventory),
                        str(ANSIBLE / "site.yml"),
                        "--diff",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=900,
                    cwd=root,
                    env=ansible_env(root / "ansible-home"),
                )
            )
            site.durations.append(time.monotonic() - started)
            if site.runs[-1].returncode:
                break
        print(f"converge durations: {[round(d, 1) for d in site.durations]} s")
        yield site


def _group_name() -> str:
    import grp

    return grp.getgrgid(os.getgid()).gr_name


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_path("purelib")


def _stop_standby(site: Site) -> None:
    with contextlib.suppress(Exception):
        subprocess.run(site.doc["node"][STANDBY]["stop"], timeout=60, capture_output=True)


def test_converge_provisions_standby_and_drctl(site: Site):
    first = site.runs[0]
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr
    counts = recap(first.stdout)
    assert counts["failed"] == 0 and counts["changed"] > 0

    # drctl in its own virtualenv, from the source folder
    assert site.drctl.exists()
    installed = json.loads((site.prefix / "opt/drctl/venv/drctl-install.json").read_text())
    assert installed["source"] == str(site.root / "src")

    # secret files: 0600, the service account's, one per secret; drctl.toml points at them
    secret_dir = site.prefix / "etc/drctl"
    files = {
        "restic.pass": "restic",
        "phi.key": "phi",
        "s3-backup.id": "s3id",
        "s3-backup.key": "s3key",
        "s3-prune.id": "pruneid",
        "s3-prune.key": "prunekey",
        "primary-index.pass": "primaryindex",
    }
    for name, key in files.items():
        info = (secret_dir / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, name
        assert info.st_uid == os.getuid()
        assert (secret_dir / name).read_text() == site.secrets[key] + "\n"
    assert not (secret_dir / "webhook.url").exists()
    doc = site.doc
    repo = doc["repository"]["offsite"]
    assert repo["password"] == f"file:{secret_dir}/restic.pass"
    assert repo["aws_access_key_id"] == f"file:{secret_dir}/s3-backup.id"
    assert repo["prune_credentials"]["aws_secret_access_key"] == f"file:{secret_dir}/s3-prune.key"
    assert doc["controller"]["phi_key"] == f"file:{secret_dir}/phi.key"
    assert doc["drill"]["mode"] == STANDBY

    # the standby node as pacs_standby published it: this host's agent, localctl commands
    node = doc["node"][STANDBY]
    assert node["role"] == "standby" and node["agent"] == socket.gethostname().split(".")[0]
    assert node["index"] == f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{site.standby_db}"
    assert node["start"][1:4] == ["-m", "drctl.pacs.orthanc.localctl", "start"]
    assert doc["node"]["primary"]["rest"] == site.primary_node.spec.rest_url

    # Orthanc's config is the one drctl's own generator writes for such a node
    dicom_port, http_port = site.standby_ports
    storage = site.prefix / "var/lib/orthanc/db"
    spec = OrthancSpec(
        name=STANDBY,
        aet="STANDBY",
        dicom_port=dicom_port,
        http_port=http_port,
        storage_dir=storage,
        index_dir=storage,
        stable_age=1,
        postgres=PostgresIndexSpec(PG_HOST, PG_PORT, site.standby_db, PG_USER),
        modalities={"drctl": ("DRCTL", "127.0.0.1", 11112)},
    )
    assert json.loads(site.orthanc_config.read_text()) == render(spec)

    # units: TCP_NODELAY in the standby's service environment, one scheduler per agent
    unit = (site.prefix / "etc/systemd/system/orthanc.service").read_text()
    assert "Environment=TCP_NODELAY=1" in unit
    assert (
        f"ExecStart=/usr/sbin/Orthanc --logdir={site.prefix}/var/log/orthanc "
        f"{site.orthanc_config}" in unit
    )
    scheduler = (site.prefix / "etc/systemd/system/drctl-scheduler@.service").read_text()
    assert f"{site.drctl} --config {site.config} scheduler run --agent %i" in scheduler

    # the handler ran config check and doctor (repository not initialised yet, standby not
    # started: tolerated and reported)
    assert "RUNNING HANDLER [drctl_controller : Run drctl doctor]" in first.stdout
    assert "tolerated failures" in first.stdout
    check = site.cli("config", "check")
    assert check.returncode == 0, check.stderr


def test_second_converge_changes_nothing(site: Site):
    assert len(site.runs) == 2, "the first converge failed"
    second = site.runs[1]
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr
    counts = recap(second.stdout)
    assert counts["changed"] == 0 and counts["failed"] == 0, counts
    assert "RUNNING HANDLER" not in second.stdout


def test_no_secret_in_diffs_templates_or_repository(site: Site):
    values = list(site.secrets.values())
    for run in site.runs:
        for value in values:
            assert value not in run.stdout and value not in run.stderr
    assert "--- before" in site.runs[0].stdout  # the diff was shown, without the secrets
    generated = [site.config, site.orthanc_config, *(site.prefix / "etc/systemd/system").iterdir()]
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    checked = [*generated, *(REPO / p for p in tracked if p), *ANSIBLE.rglob("*")]
    for path in checked:
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for value in values:
                assert value not in text, f"a secret value is in {path}"


def test_drill_on_the_provisioned_standby_passes(site: Site):
    assert site.runs and site.runs[0].returncode == 0, "the converge failed"
    node = site.doc["node"][STANDBY]
    started = subprocess.run(node["start"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    pid = int(Path(node["start"][node["start"].index("--pidfile") + 1]).read_text())
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"TCP_NODELAY=1" in environ

    doctor = site.cli("doctor")
    assert doctor.returncode in (0, 1), doctor.stderr
    failing = [c for c in json.loads(doctor.stdout)["checks"] if c["status"] == "fail"]
    assert {c["check"] for c in failing} <= {"repository offsite"}, failing

    init = site.cli("repo", "init")
    assert init.returncode == 0, init.stdout + init.stderr
    backup = site.cli("backup", "run")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert json.loads(backup.stdout)["studies"] == STUDIES

    drill = site.cli("drill", "run", "--standby", STANDBY)
    assert drill.returncode == 0, drill.stdout[-4000:] + drill.stderr[-4000:]
    result = json.loads(drill.stdout)
    assert result["state"] == "passed" and result["standby"] == STANDBY
    assert result["studies_verified"] == result["studies_expected"] == STUDIES
    assert result["findings"] == []
