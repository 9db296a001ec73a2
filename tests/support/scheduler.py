"""Scheduler test helpers: real daemons as subprocesses (all killed at the end), a webhook
and ping receiver (http.server on loopback), a small SMTP server, metrics scraping and
catalog reads."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socketserver
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.drctl_env import DRCTL

# --- daemons -------------------------------------------------------------------------------


@dataclass
class Daemon:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> tuple[int, float]:
        """SIGTERM (SIGCONT first, in case it is frozen); returns (exit code, seconds)."""
        t0 = time.monotonic()
        if self.popen.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        return code, time.monotonic() - t0


class Daemons:
    """Starts ``drctl scheduler run`` processes and kills whatever is left at the end."""

    def __init__(self, folder: Path, env: dict | None = None):
        self.folder = folder
        self.env = {**os.environ, **(env or {})}
        self.all: list[Daemon] = []

    def start(self, name: str, config: Path, agent: str, *extra: str) -> Daemon:
        log = self.folder / f"{name}.log"
        argv = [DRCTL, "--config", str(config), *extra, "scheduler", "run", "--agent", agent]
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL
            )
        daemon = Daemon(name, popen, log, time.monotonic())
        self.all.append(daemon)
        return daemon

    def close(self) -> None:
        for daemon in self.all:
            if daemon.popen.poll() is None:
                daemon.signal(signal.SIGCONT)
                daemon.popen.kill()
                daemon.popen.wait()


@contextlib.contextmanager
def daemons(folder: Path, env: dict | None = None) -> Iterator[Daemons]:
    group = Daemons(folder, env)
    try:
        yield group
    finally:
        group.close()


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- HTTP receiver (webhook, pings) --------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    body: bytes
    headers: dict
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server recording every request. ``statuses`` (consumed in order)
    lets a test make it fail first."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def posts(self, path: str = "/hook") -> list[Received]:
        return [r for r in self.requests if r.path == path and r.method == "POST"]

    def alerts(self, kind: str | None = None, path: str = "/hook") -> list[dict]:
        found = [r.json() for r in self.posts(path)]
        return [a for a in found if kind is None or a["kind"] == kind]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    holder: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = holder["r"]
            rec.requests.append(
                Received(self.command, self.path, body, dict(self.headers), time.time())
            )
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_GET = _record  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(server)
    holder["r"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


# --- SMTP ----------------------------------------------------------------------------------


@dataclass
class SmtpServer:
    server: socketserver.ThreadingTCPServer
    messages: list[dict] = field(default_factory=list)
    auth: list[tuple[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"


@contextlib.contextmanager
def smtp_server(*, with_auth: bool = True) -> Iterator[SmtpServer]:
    """A small SMTP server (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT; no STARTTLS)."""
    holder: dict = {}

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, text: str) -> None:
            self.wfile.write(text.encode() + b"\r\n")

        def handle(self) -> None:
            state: dict = {"from": None, "to": [], "data": None}
            self.reply("220 localhost drctl-test SMTP")
            while line := self.rfile.readline():
                if state["data"] is not None:
                    self._data_line(line, state)
                    continue
                verb = line.strip().split(b" ", 1)[0].upper()
                arg = line.strip()[len(verb) + 1 :].decode()
                if verb == b"EHLO":
                    self.reply("250-localhost" + ("\r\n250-AUTH PLAIN" if with_auth else ""))
                    self.reply("250 8BITMIME")
                elif verb == b"AUTH":
                    _, _, blob = arg.partition(" ")
                    _, user, password = base64.b64decode(blob).decode().split("\0")
                    holder["s"].auth.append((user, password))
                    self.reply("235 ok")
                elif verb == b"MAIL":
                    state["from"] = arg
                    self.reply("250 ok")
                elif verb == b"RCPT":
                    state["to"].append(arg)
                    self.reply("250 ok")
                elif verb == b"DATA":
                    state["data"] = []
                    self.reply("354 go on")
                elif verb == b"QUIT":
                    self.reply("221 bye")
                    return
                elif verb in (b"RSET", b"NOOP", b"HELO"):
                    self.reply("250 ok")
                else:
                    self.reply("502 not implemented")

        def _data_line(self, line: bytes, state: dict) -> None:
            if line in (b".\r\n", b".\n"):
                holder["s"].messages.append(
                    {
                        "from": state["from"],
                        "to": list(state["to"]),
                        "data": b"".join(state["data"]).decode(),
                    }
                )
                state.update({"from": None, "to": [], "data": None})
                self.reply("250 queued")
            else:
                state["data"].append(line[1:] if line.startswith(b"..") else line)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    smtp = SmtpServer(server)
    holder["s"] = smtp
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield smtp
    finally:
        server.shutdown()
        server.server_close()


# --- restic repositories with a cheap key derivation -------------------------------------


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 2**20, dklen=64)


def _poly1305_aes(key: bytes, nonce: bytes, message: bytes) -> bytes:
    """restic's MAC: Poly1305 keyed with r (masked) and AES-128_k(nonce)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    k, r = bytearray(key[:16]), bytearray(key[16:32])
    for i in (3, 7, 11, 15):
        r[i] &= 15
    for i in (4, 8, 12):
        r[i] &= 252
    aes = Cipher(algorithms.AES(bytes(k)), modes.ECB()).encryptor()
    return Poly1305.generate_tag(bytes(r) + aes.update(nonce) + aes.finalize(), message)


def _ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return cipher.update(data) + cipher.finalize()


def fast_repository(path: Path, password: str) -> Path:
    """``restic init`` a local repository for tests whose jobs must be fast, then re-wrap
    its master key with cheap scrypt parameters: restic calibrates the key derivation to
    about half a second per command at init, which would dominate a job that fires every
    second. Never for real repositories."""
    subprocess.run(
        ["restic", "init", "-r", str(path), "-q"],
        check=True,
        timeout=60,
        capture_output=True,
        env={"RESTIC_PASSWORD": password, "PATH": "/usr/bin:/bin", "HOME": str(path.parent)},
    )
    [keyfile] = list((path / "keys").iterdir())
    doc = json.loads(keyfile.read_text())
    derived = _scrypt(password, base64.b64decode(doc["salt"]), doc["N"], doc["r"], doc["p"])
    data = base64.b64decode(doc["data"])
    nonce, sealed, tag = data[:16], data[16:-16], data[-16:]
    assert _poly1305_aes(derived[32:], nonce, sealed) == tag, "restic key file not understood"
    master = _ctr(derived[:32], nonce, sealed)
    salt, nonce = os.urandom(64), os.urandom(16)
    derived = _scrypt(password, salt, 1024, 8, 1)
    sealed = _ctr(derived[:32], nonce, master)
    doc.update(
        {
            "N": 1024,
            "r": 8,
            "p": 1,
            "salt": base64.b64encode(salt).decode(),
            "data": base64.b64encode(
                nonce + sealed + _poly1305_aes(derived[32:], nonce, sealed)
            ).decode(),
        }
    )
    raw = json.dumps(doc, separators=(",", ":")).encode()
    (keyfile.parent / hashlib.sha256(raw).hexdigest()).write_bytes(raw)
    keyfile.unlink()
    return path


# --- metrics and catalog -------------------------------------------------------------------


def scrape(listen: str) -> str:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        return response.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` whose labels include ``labels`` (None if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def scheduler_runs(catalog_url: str, *, kind: str | None = None) -> list[dict]:
    """Runs triggered by the scheduler, oldest first, as dicts (details parsed); empty
    while the daemon has not created the catalog yet."""
    from sqlalchemy import select

    from drctl.catalog.db import Catalog
    from drctl.catalog.models import Run
    from drctl.errors import CatalogUnavailable

    catalog = Catalog.open(catalog_url, migrate=False)
    try:
        with catalog.session() as s:
            query = select(Run).where(Run.trigger == "scheduler").order_by(Run.id)
            if kind:
                query = query.where(Run.kind == kind)
            return [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "node": r.node,
                    "repository": r.repository,
                    "state": r.state,
                    "reason": r.reason,
                    "pid": r.pid,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "schedule": (r.details or {}).get("schedule") or {},
                }
                for r in s.scalars(query)
            ]
    except CatalogUnavailable:
        return []
    finally:
        catalog.close()
