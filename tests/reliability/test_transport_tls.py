"""Transport security with certificates made in the test.

DICOM TLS through drctl's node configuration (``[node.X] tls = {ca, cert, key,
key_password}``) against an Orthanc that speaks DICOM only over TLS and requires drctl's
client certificate: C-ECHO (doctor), C-FIND and C-GET (drctl's DICOM client built from
the node config), C-STORE and C-FIND (``drctl restore study``); the key given as a file,
as an ``env:`` secret and as a ``command:`` secret; a node whose certificate drctl does not
trust is refused.

S3 over HTTPS (a moto_server with a certificate of the test CA): verified by default (an
untrusted certificate is exit 3 and says why), ``repository.cacert`` makes it work for
restic and boto3 alike, ``insecure_tls`` turns verification off only when asked, and
doctor warns about it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import boto3
import pytest
from pydicom import Dataset, dcmread

from drctl.dicom.client import InstanceRef
from drctl.execute import spawn, terminate
from drctl.net import free_port, wait_for_port
from drctl.pacs.base import pacs_node
from drctl.pacs.orthanc.nodeconfig import DicomTlsSpec
from drctl.sample import SampleArchive, generate
from tests.reliability.pki import KEY_PASSWORD, Pki, make_pki
from tests.support.drctl_env import DrctlEnv
from tests.support.nodes import ManagedNode, managed_node
from tests.support.postgres import create_database, drop_database
from tests.support.s3 import S3_KEY_ID, S3_SECRET
from tests.support.scenarios import env_for, study_public_id

pytestmark = pytest.mark.xdist_group("reliability-tls")  # one TLS node per worker run


@dataclass
class TlsSite:
    root: Path
    pki: Pki
    node: ManagedNode
    archive: SampleArchive


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    pki = make_pki(root / "pki")
    database = create_database("drctl_orthanc")
    spec = DicomTlsSpec(pki.server_cert, pki.server_key, pki.ca, remote_certificate_required=True)
    node = managed_node(root / "node", "primary", postgres_db=database, tls=spec)
    try:
        archive = generate(root / "sample", studies=3, series_per_study=1, instances_per_series=2)
        for path in archive.paths:  # the DICOM port speaks TLS only: load over REST
            node.rest.post("/instances", Path(path).read_bytes(), content_type="application/dicom")
        yield TlsSite(root, pki, node, archive)
    finally:
        node.stop()
        drop_database(database)


def _tls_table(pki: Pki, **over) -> dict:
    return {
        "ca": str(pki.ca),
        "cert": str(pki.client_cert),
        "key": "env:DRCTL_T_TLS_KEY",
        "key_password": "env:DRCTL_T_TLS_KEY_PW",
        **over,
    }


def _env(site: TlsSite, folder: Path, repository: dict, **tls_over) -> DrctlEnv:
    env = env_for(folder, site.node, repository, node={"tls": _tls_table(site.pki, **tls_over)})
    env.env.update(
        {"DRCTL_T_TLS_KEY": site.pki.client_key.read_text(), "DRCTL_T_TLS_KEY_PW": KEY_PASSWORD}
    )
    return env


def _node_check(env: DrctlEnv) -> dict:
    doctor = env.cli("doctor", check_exit=None)
    [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "node primary"]
    return check


def _datasets(site: TlsSite, study_uid: str) -> dict[str, Dataset]:
    """The study's instances as the node serves them, by SOP Instance UID. Compared by
    value: Orthanc rewrites some value padding of what it receives over C-STORE (not of
    a REST upload), so the bytes of a round trip may differ where the values do not."""
    study = study_public_id(site.archive, study_uid)
    served = [
        dcmread(BytesIO(site.node.rest.get_bytes(f"/instances/{i['ID']}/file")))
        for i in site.node.rest.get(f"/studies/{study}/instances")
    ]
    return {str(ds.SOPInstanceUID): ds for ds in served}


class _Received(list):
    def append_uid(self, study_uid, series_uid, sop_uid, data) -> None:
        self.append(sop_uid)


def _leftover_keys() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("drctl-tls-*")}


# --- DICOM TLS ---------------------------------------------------------------------------


def test_dicom_tls_echo_find_get_store_through_the_node_config(tls_site: TlsSite, tmp_path):
    site = tls_site
    keys_before = _leftover_keys()
    env = _env(site, tmp_path, {"url": str(tmp_path / "repo")})
    env.cli_json("repo", "init")
    assert env.cli_json("backup", "run")["state"] == "succeeded"

    # C-ECHO
    check = _node_check(env)
    assert check["status"] == "ok", check

    # C-FIND and C-GET with drctl's client, the peer built from the node config, with the
    # key as a file, an env: secret and a command: secret
    uid = sorted(site.archive.study_uids)[0]
    instances = site.archive.instances_of(uid)
    for key in (
        f"file:{site.pki.client_key}",
        "env:DRCTL_T_TLS_KEY",
        f"command:cat {site.pki.client_key}",
    ):
        env.doc["node"]["primary"]["tls"]["key"] = key
        env.write()
        os.environ.update(env.env)
        try:
            node = pacs_node(env.settings, "primary")
            peer = node.peer()
            assert peer.tls is not None and "dicom+tls" in str(peer)
            client = node.dicom_client()
            with client.open(peer) as session:
                assert {s.study_uid for s in session.find_studies()} == site.archive.study_uids
            got = _Received()
            summary = client.retrieve(
                peer,
                [
                    InstanceRef(
                        i.study_uid, i.series_uid, i.sop_uid, i.sop_class_uid, i.transfer_syntax_uid
                    )
                    for i in instances
                ],
                got.append_uid,
            )
        finally:
            for name in ("DRCTL_T_TLS_KEY", "DRCTL_T_TLS_KEY_PW"):
                os.environ.pop(name, None)
        assert summary.ok and summary.received == len(instances) == len(got), (key, summary)
    assert _leftover_keys() == keys_before  # a key that is not a file lives only for the load

    # C-STORE and C-FIND: a study restored into the TLS node
    originals = {i.sop_uid: dcmread(i.path) for i in instances}
    assert _datasets(site, uid) == originals
    site.node.rest.delete("studies", study_public_id(site.archive, uid))
    restored = env.cli_json("restore", "study", uid, "--to", "primary")
    assert restored["state"] == "succeeded" and restored["studies"][0]["verified"], restored
    assert _datasets(site, uid) == originals

    # a node whose certificate drctl does not trust, and a node config without TLS
    env.doc["node"]["primary"]["tls"]["ca"] = str(site.pki.other_ca)
    env.write()
    started = time.monotonic()
    check = _node_check(env)
    assert check["status"] == "fail" and "certificate" in check["detail"].lower(), check
    del env.doc["node"]["primary"]["tls"]
    env.write()
    check = _node_check(env)
    assert check["status"] == "fail", check
    assert time.monotonic() - started < 40
    assert KEY_PASSWORD not in json.dumps(check)


# --- S3 over HTTPS -------------------------------------------------------------------------


@pytest.fixture
def https_moto(tls_site: TlsSite, tmp_path):
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    popen = spawn(
        [
            str(moto),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            str(tls_site.pki.server_cert),
            "-k",
            str(tls_site.pki.server_key),
        ],
        log_path=tmp_path / "moto-https.log",
    )
    try:
        assert wait_for_port("127.0.0.1", port, 30), "moto_server (https) did not start"
        endpoint = f"https://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            verify=str(tls_site.pki.ca),
        )
        s3.create_bucket(Bucket="tls-bucket")
        yield f"s3:{endpoint}/tls-bucket/repo"
    finally:
        terminate(popen, grace=5)


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("drctl: error:")]


def test_s3_over_https_is_verified_unless_told_otherwise(tls_site: TlsSite, https_moto, tmp_path):
    site = tls_site
    repo = {
        "url": https_moto,
        "aws_access_key_id": "env:DRCTL_TEST_S3_KEY",
        "aws_secret_access_key": "env:DRCTL_TEST_S3_SECRET",
    }
    env = _env(site, tmp_path, repo)

    # an untrusted certificate: refused, exit 3, says why (boto3's look at the bucket)
    started = time.monotonic()
    proc = env.cli("repo", "init", check_exit=3)
    assert time.monotonic() - started < 40
    [error] = _errors(proc.stderr)
    assert "TLS certificate is not trusted" in error and "repository.cacert" in error, error
    print(f"untrusted S3 certificate: exit 3 after {time.monotonic() - started:.1f}s: {error}")

    # the CA configured: restic and boto3 both trust it
    env.doc["repository"]["offsite"]["cacert"] = str(site.pki.ca)
    env.write()
    env.cli_json("repo", "init")
    backup = env.cli_json("backup", "run")
    assert backup["state"] == "succeeded"
    assert len(env.cli_json("snapshots", "list", "--verify-repository")) == 1

    # without it again, restic itself refuses the certificate (no boto3 probe on this path)
    del env.doc["repository"]["offsite"]["cacert"]
    env.write()
    proc = env.cli("snapshots", "list", "--verify-repository", check_exit=3)
    [error] = _errors(proc.stderr)
    assert "repository offsite: the storage's TLS certificate is not trusted" in error, error
    assert "repository.cacert" in error
    print(f"restic without the CA: {error}")

    # insecure_tls only when asked, and doctor says so
    env.doc["repository"]["offsite"]["insecure_tls"] = True
    env.write()
    assert len(env.cli_json("snapshots", "list", "--verify-repository")) == 1
    doctor = env.cli("doctor", check_exit=None)
    assert "Traceback" not in doctor.stderr
    [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "repository offsite"]
    assert check["status"] == "warn" and "insecure_tls" in check["detail"], check
