"""Secrets and patient data stay in. One site, run once per module as an admin would:
a PostgreSQL-indexed primary backed up to S3 (moto), a study deleted and a stored file
rewritten (a warning backup), the index replicated to a PostgreSQL standby (dump mode), a
sandbox drill that finds the rewritten file, then the read-only commands. A watcher reads
every process's argv (/proc/*/cmdline) all along.

Secrets: the restic password, the S3 keys and every PostgreSQL password (catalog, node
indexes, the drill's sandbox server), and the PHI key never appear in any argv, in ``-vv``
logs, in ``--json`` output, in the catalog, in reports or in the recovery kit.

Patient data: no patient name, birth date or plain patient ID in the catalog, reports,
the recovery kit or anything drctl prints; patient IDs only as the keyed hash. With
``reports.redact_uids`` the drill report holds no study or instance UID either, while the
people at the console still see the study a finding is about.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest

from drctl.net import free_port
from drctl.verify.phi import patient_hash
from tests.reliability.test_source_integrity import rewrite, stored_file
from tests.support.drctl_env import DRCTL, PHI_KEY, DrctlEnv
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, create_database, drop_database
from tests.support.s3 import S3_KEY_ID, S3_SECRET
from tests.support.scenarios import env_for, primary, s3_repository, study_public_id

pytestmark = pytest.mark.xdist_group("reliability-secrets-phi")  # one site per worker run

SANDBOX_PG = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"


class Receiver:
    """A webhook receiver on loopback: every POST body, by path."""

    def __init__(self):
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                bodies.append((self.path, self.rfile.read(length).decode("utf-8", "replace")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def scheduler_alerts(site: Site) -> None:
    """A daemon runs the (warning) backup on a schedule: its webhook POSTs, metrics page
    and log are kept for the greps."""
    receiver = Receiver()
    metrics = f"127.0.0.1:{free_port()}"
    token = site.secrets["webhook token"]
    env = site.env
    env.doc["schedule"] = {"backup": "every:2s"}
    env.doc["notify"] = {
        "webhook": "env:DRCTL_T_HOOK",
        "timeout": "5s",
        "retries": 1,
        "metrics": {"listen": metrics},
    }
    env.write()
    log = site.root / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [DRCTL, "--config", str(env.config_path), "-vv", "scheduler", "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env.env, "DRCTL_T_HOOK": f"{receiver.url}/hook?token={token}"},
        )
    try:
        deadline = time.monotonic() + 90
        while not any("vanished" in body for _, body in receiver.bodies):
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as page:  # noqa: S310
            site.metrics = page.read().decode()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        receiver.close()
        del env.doc["schedule"], env.doc["notify"]
        env.write()
    site.webhooks = [body for _, body in receiver.bodies]
    site.daemon_log = log.read_text(errors="replace")


class ArgvWatcher(threading.Thread):
    """Every distinct argv of every process, read from /proc while it runs."""

    def __init__(self, private_dirs: tuple[Path, ...] = ()):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.halt = threading.Event()
        # modes of what appears in these folders while drctl works (restored patient data)
        self.private_dirs = private_dirs
        self.modes: dict[Path, int] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    raw = cmdline.read_bytes()
                except OSError:
                    continue
                if raw:
                    self.seen.add(raw.replace(b"\0", b" ").decode("utf-8", "replace"))
            for folder in self.private_dirs:
                for child in folder.glob("*") if folder.is_dir() else ():
                    try:
                        self.modes.setdefault(child, stat.S_IMODE(child.stat().st_mode))
                    except OSError:
                        continue
            time.sleep(0.02)

    def stop(self) -> set[str]:
        self.halt.set()
        self.join()
        return self.seen


@dataclass
class Site:
    root: Path
    env: DrctlEnv
    primary: ManagedNode
    archive: object
    secrets: dict[str, str]
    vanished: str
    rewritten: str
    outputs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    argv: set[str] = field(default_factory=set)
    private_modes: dict[Path, int] = field(default_factory=dict)
    catalog_dump: str = ""
    catalog_db: str = ""
    webhooks: list[str] = field(default_factory=list)
    metrics: str = ""
    daemon_log: str = ""

    def run(self, name: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        proc = self.env.cli("-vv", *args, check_exit=expect)
        self.outputs[name] = proc
        return proc

    def json(self, name: str):
        return json.loads(self.outputs[name].stdout)

    def printed(self) -> str:
        """Everything drctl printed: commands (-vv), the daemon's log, webhook bodies,
        the metrics page."""
        return "\n".join(
            [
                *(p.stdout + p.stderr for p in self.outputs.values()),
                self.daemon_log,
                *self.webhooks,
                self.metrics,
            ]
        )

    @property
    def state_dir(self) -> Path:
        return self.env.root / "state"

    def files(self, folder: Path) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _secret_file(folder: Path, name: str, value: str) -> str:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return f"file:{path}"


def exposed_doctor(site: Site) -> None:
    """doctor with a secret file and the config readable by others: warned, failed."""
    env = site.env
    secret = Path(env.doc["controller"]["catalog_password"].removeprefix("file:"))
    secret.chmod(0o644)
    env.config_path.chmod(0o644)
    try:
        site.run("doctor", "doctor", expect=1)
    finally:
        secret.chmod(0o600)
        env.config_path.chmod(0o600)
    site.run("config check after", "config", "check")


@pytest.fixture(scope="module")
def site(tmp_path_factory, moto_s3):
    root = tmp_path_factory.mktemp("secrets-phi")
    secrets_dir = root / "more-secrets"
    secrets_dir.mkdir(mode=0o700)
    token = uuid.uuid4().hex[:10]
    secrets = {
        "restic password": f"restic-pw-{token}",
        "S3 key id": S3_KEY_ID,
        "S3 secret": S3_SECRET,
        "catalog password": f"catalog-pw-{token}",
        "index password": f"index-pw-{token}",
        "sandbox password": f"sandbox-pw-{token}",
        "PHI key": PHI_KEY,
        "webhook token": f"hook-token-{token}",
    }
    catalog_db = create_database("drctl_catalog")
    standby_db = create_database("drctl_orthanc")
    standby = managed_node(root / "standby", "standby", postgres_db=standby_db)
    watcher = ArgvWatcher(private_dirs=(root / "sandbox",))
    try:
        with primary(root / "primary", studies=6) as (node, archive):
            index_password = _secret_file(secrets_dir, "index.pass", secrets["index password"])
            env = env_for(
                root,
                node,
                {**s3_repository(moto_s3, moto_s3.bucket()), "password": "env:DRCTL_T_RESTIC"},
                node={
                    "index_password": index_password,
                    "vanished_alarm": 0.5,
                    "modified_alarm": 0.5,
                },
                controller={
                    "catalog": f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{catalog_db}",
                    "catalog_password": _secret_file(
                        secrets_dir, "catalog.pass", secrets["catalog password"]
                    ),
                },
                drill={
                    "sandbox_dir": str(root / "sandbox"),
                    "sandbox_postgres": SANDBOX_PG,
                    "sandbox_postgres_password": _secret_file(
                        secrets_dir, "sandbox.pass", secrets["sandbox password"]
                    ),
                },
                reports={"redact_uids": True, "dir": str(root / "reports")},
            )
            env.env["DRCTL_T_RESTIC"] = secrets["restic password"]
            env.doc["node"]["standby"] = standby.node_table(
                role="standby",
                primary="primary",
                replication="dump",
                start=standby.start_argv(),
                stop=standby.stop_argv(),
                index_password=index_password,
            )
            env.doc["node"]["standby"].pop("index_copy")
            env.write()
            uids = sorted(archive.study_uids)
            s = Site(
                root,
                env,
                node,
                archive,
                secrets,
                vanished=uids[0],
                rewritten=uids[1],
                catalog_db=catalog_db,
            )
            watcher.start()
            s.run("repo init", "repo", "init")
            s.run("backup 1", "backup", "run")
            node.rest.delete("studies", study_public_id(archive, s.vanished))
            path = stored_file(node, archive, s.rewritten)
            data = bytearray(path.read_bytes())
            data[-48:-16] = bytes(b ^ 0xA5 for b in data[-48:-16])
            rewrite(path, bytes(data))
            s.run("backup 2", "backup", "run", expect=1)
            s.run("replicate", "replicate", "run")
            s.run("drill", "drill", "run", "--full", expect=1)
            for name, args, code in [
                ("snapshots", ("snapshots", "list", "--verify-repository"), 0),
                ("manifest", ("manifest", "show", "latest"), 0),
                ("replicate status", ("replicate", "status"), None),
                ("config check", ("config", "check"), 0),
                ("kit", ("recovery-kit", "--out", str(root / "kit")), 0),
            ]:
                s.run(name, *args, expect=code)
            exposed_doctor(s)
            scheduler_alerts(s)
            s.argv = watcher.stop()
            s.private_modes = dict(watcher.modes)
            s.catalog_dump = subprocess.run(
                [
                    "pg_dump",
                    "--data-only",
                    "--inserts",
                    "-h",
                    PG_HOST,
                    "-p",
                    str(PG_PORT),
                    "-U",
                    PG_USER,
                    catalog_db,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            yield s
    finally:
        if watcher.is_alive():
            watcher.stop()
        standby.stop()
        for db in (catalog_db, standby_db, standby_db + "_drctl_new", standby_db + "_drctl_prev"):
            drop_database(db)


# --- one flow, every check (a module fixture shared by several tests would be rebuilt on
# each xdist worker that runs one of them) -------------------------------------------------


def test_secrets_and_patient_data_stay_in(site: Site):
    check_the_flow_ran(site)
    check_no_secret_in_any_process_argv(site)
    check_no_secret_in_logs_json_catalog_reports_or_kit(site)
    check_no_patient_data_in_catalog_reports_kit_or_output(site)
    check_patient_ids_only_as_keyed_hashes(site)
    check_redacted_drill_report(site)
    check_files_holding_patient_data_are_private(site)
    check_exposed_secret_file_and_config_warn_and_doctor_fails(site)


def check_the_flow_ran(site: Site):
    assert site.json("backup 1")["state"] == "succeeded"
    second = site.json("backup 2")
    assert second["state"] == "warning" and second["vanished"] == [site.vanished]
    assert ("source_modified", site.rewritten) in {
        (f["kind"], f["study_uid"]) for f in second["findings"]
    }
    assert site.json("replicate")["state"] == "succeeded", site.json("replicate")
    drill = site.json("drill")
    assert drill["state"] == "failed"
    assert site.rewritten in {f["study_uid"] for f in drill["findings"]}  # the console sees it
    hooks = [json.loads(body) for body in site.webhooks]
    assert "vanished_studies" in {h["kind"] for h in hooks}, hooks
    assert "drctl_" in site.metrics


# --- secrets -------------------------------------------------------------------------------


def check_no_secret_in_any_process_argv(site: Site):
    seen = site.argv
    for program in ("restic", "pg_dump", "pg_restore", "Orthanc"):
        assert any(program in argv for argv in seen), f"{program} never seen"
    assert any("restic" in argv and " backup " in argv for argv in seen)
    for what, secret in site.secrets.items():
        leaks = [argv for argv in seen if secret in argv]
        assert not leaks, f"{what} in argv: {leaks[:3]}"


def check_no_secret_in_logs_json_catalog_reports_or_kit(site: Site):
    texts = {"stdout/stderr (-vv)": site.printed(), "catalog": site.catalog_dump}
    assert len(site.printed()) > 10_000  # -vv logs and JSON were captured
    for path, data in {
        **site.files(site.root / "reports"),
        **site.files(site.root / "kit"),
    }.items():
        texts[str(path)] = data.decode("utf-8", "replace")
    for where, text in texts.items():
        for what, secret in site.secrets.items():
            assert secret not in text, f"{what} in {where}"


# --- patient data --------------------------------------------------------------------------


def _phi(site: Site) -> dict[str, set[str]]:
    births = {
        str(pydicom.dcmread(i.path, stop_before_pixels=True).PatientBirthDate)
        for i in site.archive.instances
    }
    return {
        "patient name": site.archive.patient_names
        | {n.replace("^", " ") for n in site.archive.patient_names},
        "patient ID": site.archive.patient_ids,
        "birth date": births,
    }


def check_no_patient_data_in_catalog_reports_kit_or_output(site: Site):
    reports = site.files(site.root / "reports")
    assert any(p.suffix == ".html" for p in reports) and any(p.suffix == ".json" for p in reports)
    texts = {"catalog": site.catalog_dump, "output": site.printed()}
    for path, data in {**reports, **site.files(site.root / "kit")}.items():
        texts[str(path)] = data.decode("utf-8", "replace")
    for where, text in texts.items():
        for what, values in _phi(site).items():
            found = sorted(v for v in values if v in text)
            assert not found, f"{what} {found[:3]} in {where}"


def check_patient_ids_only_as_keyed_hashes(site: Site):
    key = PHI_KEY.encode()
    keyed = {patient_hash(key, pid) for pid in site.archive.patient_ids}
    assert {h for h in keyed if h in site.catalog_dump} == keyed  # all, under the site's key
    plain = {hashlib.sha256(pid.encode()).hexdigest()[:32] for pid in site.archive.patient_ids}
    plain |= {patient_hash(b"-", pid) for pid in site.archive.patient_ids}
    assert not any(h in site.catalog_dump for h in plain)


def check_redacted_drill_report(site: Site):
    """With reports.redact_uids the report names no study, even for a finding (instance
    UIDs: see test_redaction_catches_uuid_derived_uids)."""
    drill = site.json("drill")
    html = Path(drill["report"]).read_text()
    document = Path(drill["report"]).with_suffix(".json").read_text()
    assert "instance_corrupt" in html or "instance_corrupt" in document
    for where, text in (("HTML", html), ("JSON", document)):
        found = sorted(u for u in site.archive.study_uids if u in text)
        assert not found, f"study UIDs {found[:3]} in the {where} report"
    assert "reports.redact_uids" in html


def check_files_holding_patient_data_are_private(site: Site):
    """The index copy staged on the controller and a drill's restored sandbox hold patient
    names: owner only."""
    assert site.private_modes, "the drill's sandbox folder was never seen"
    exposed = [
        f"{p.relative_to(site.root)} {m:04o}"
        for p, m in site.private_modes.items()
        if m & (stat.S_IRWXG | stat.S_IRWXO)
    ]
    staging = site.state_dir / "staging"
    if stat.S_IMODE(staging.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
        exposed.append(f"{staging.relative_to(site.root)} {staging.stat().st_mode:o}")
    copies = [p for p in staging.rglob("*") if p.name in ("index.dump", "index.sqlite")]
    assert copies
    exposed += [
        f"{p.relative_to(site.root)} {stat.S_IMODE(p.stat().st_mode):04o}"
        for p in copies
        if stat.S_IMODE(p.stat().st_mode) != 0o600
    ]
    assert not exposed, exposed


def check_exposed_secret_file_and_config_warn_and_doctor_fails(site: Site):
    env = site.env
    secret = Path(env.doc["controller"]["catalog_password"].removeprefix("file:"))
    doctor = site.outputs["doctor"]
    assert f"{secret} is accessible by other users (mode 0644)" in doctor.stderr  # warned
    assert f"{env.config_path} is accessible by other users (mode 0644)" in doctor.stderr
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    check = checks["secret controller.catalog_password"]
    assert check["status"] == "fail" and "chmod 600" in check["detail"]
    check = checks["config file"]
    assert check["status"] == "fail" and "accessible by other users" in check["detail"]
    after = site.outputs["config check after"]
    assert "accessible by other users" not in after.stderr
    assert not json.loads(after.stdout)["warnings"]


def test_redaction_catches_uuid_derived_uids():
    from drctl.reports.model import redact_text

    text = "1 of 4 instances: 2.25.344863593266052759364743726927197207410 (MD5 differs)"
    assert "2.25.3448" not in redact_text(text)
    assert "1.2.840.10008.5.1.4.1.1.7" not in redact_text("class 1.2.840.10008.5.1.4.1.1.7")
