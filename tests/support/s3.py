"""S3 through ``moto_server`` on a free loopback port: one server per test session
(per xdist worker), one bucket per test."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from drctl.execute import spawn, terminate
from drctl.net import free_port, wait_for_port

S3_KEY_ID = "testing-backup-key"
S3_SECRET = "testing-backup-secret-0123456789"


class MotoServer:
    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.popen = spawn([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                           log_path=log_dir / "moto.log")
        if not wait_for_port("127.0.0.1", self.port, 30):
            terminate(self.popen)
            raise RuntimeError(f"moto_server did not start (see {log_dir / 'moto.log'})")

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)

    def bucket(self) -> str:
        name = f"drctl-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def repo_url(self, bucket: str, prefix: str = "repo") -> str:
        return f"s3:{self.endpoint}/{bucket}/{prefix}"

    def stop(self) -> None:
        terminate(self.popen, grace=5)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """A running moto_server (S3 API) on 127.0.0.1."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_s3) -> str:
    return moto_s3.bucket()


@pytest.fixture
def s3_env(monkeypatch):
    """S3 credentials in the environment (the config references them with env:)."""
    monkeypatch.setenv("DRCTL_TEST_S3_KEY", S3_KEY_ID)
    monkeypatch.setenv("DRCTL_TEST_S3_SECRET", S3_SECRET)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
