"""Small network helpers shared by adapters and test fixtures (loopback only in tests)."""

from __future__ import annotations

import re
import socket
import time

# What Go (restic) and Python (OpenSSL, botocore) say when a peer's certificate is not
# trusted, and what the admin should do about object storage that says it.
UNTRUSTED_CERTIFICATE = re.compile(
    r"x509: certificate|certificate signed by unknown authority|CERTIFICATE_VERIFY_FAILED|"
    r"certificate verify failed|certificate is not valid for|doesn't contain any IP SANs",
    re.I,
)
STORAGE_CACERT_HINT = (
    "set repository.cacert to the CA that signed it (insecure_tls turns verification off: "
    "anyone on the path could pose as the storage)"
)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, interval: float = 0.05) -> bool:
    """Poll until ``host:port`` accepts connections; True if it did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=min(1.0, interval * 10)):
            return True
        time.sleep(interval)
    return False
