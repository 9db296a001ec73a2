"""Orthanc 1.10 configuration files generated from a typed node description.

:func:`render` turns an :class:`OrthancSpec` into the JSON document Orthanc reads at
start-up; :func:`write` puts it on disk. The output is complete on its own (Orthanc's
built-in defaults fill what is not named) and suits both a test/sandbox node and a
standby: ``StableAge`` is short, the controller's AE goes in ``DicomModalities``,
``SaveJobs`` is explicit, and plugins are loaded only when the spec needs one.

Orthanc 1.10 cannot bind its HTTP or DICOM server to one address (it listens on every
interface); ``host`` is the address clients use, and a loopback ``host`` keeps
``RemoteAccessAllowed`` off so that the REST API only answers local clients.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from drctl.errors import ConfigError

POSTGRES_INDEX_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
MAX_AET_LENGTH = 16


class RemoteModality(NamedTuple):
    """A DICOM peer Orthanc may talk to (and accept C-FIND/C-GET/C-MOVE from)."""

    aet: str
    host: str
    port: int


@dataclass(frozen=True)
class PostgresIndexSpec:
    """Where the PostgreSQL index plugin keeps Orthanc's index (storage stays on disk)."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class DicomTlsSpec:
    """DICOM TLS material for the node's SCP (PEM files)."""

    certificate: Path
    private_key: Path
    trusted_certificates: Path
    remote_certificate_required: bool = True


@dataclass(frozen=True)
class OrthancSpec:
    """Everything that makes one Orthanc node: identity, ports, folders, index, peers.

    ``modalities`` maps a modality name to ``(aet, host, port)``; ``http_users`` maps
    user name to password (HTTP basic auth is on only when it is non-empty); ``extra``
    is merged last and may override anything drctl wrote.
    """

    name: str
    aet: str
    dicom_port: int
    http_port: int
    storage_dir: Path
    index_dir: Path
    host: str = "127.0.0.1"
    compression: bool = False
    store_md5: bool = True
    postgres: PostgresIndexSpec | None = None
    modalities: Mapping[str, RemoteModality] = field(default_factory=dict)
    limit_find_results: int = 0
    limit_find_instances: int = 0
    always_allow_find: bool = False
    always_allow_store: bool = False
    always_allow_get: bool = False
    always_allow_move: bool = False
    tls: DicomTlsSpec | None = None
    http_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    save_jobs: bool = True
    concurrent_jobs: int = 2
    stable_age: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        modalities = {
            name: RemoteModality(*(value[0], value[1], int(value[2])))
            for name, value in dict(self.modalities).items()
        }
        object.__setattr__(self, "storage_dir", Path(self.storage_dir))
        object.__setattr__(self, "index_dir", Path(self.index_dir))
        object.__setattr__(self, "modalities", MappingProxyType(modalities))
        object.__setattr__(self, "http_users", MappingProxyType(dict(self.http_users)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        problems = _problems(self)
        if problems:
            raise ConfigError(f"orthanc node {self.name!r}", problems)

    @property
    def rest_url(self) -> str:
        """Base URL of the node's REST API, e.g. ``http://127.0.0.1:8042``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    @property
    def loopback(self) -> bool:
        """True when clients reach the node on a loopback address."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_ok(port: int) -> bool:
    return isinstance(port, int) and 0 < port < 65536


def _problems(spec: OrthancSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not spec.aet or len(spec.aet) > MAX_AET_LENGTH:
        problems.append(("aet", f"must be 1 to {MAX_AET_LENGTH} characters, got {spec.aet!r}"))
    for key in ("dicom_port", "http_port"):
        if not _port_ok(getattr(spec, key)):
            problems.append((key, f"must be a TCP port (1-65535), got {getattr(spec, key)!r}"))
    if spec.dicom_port == spec.http_port:
        problems.append(("http_port", "must differ from dicom_port"))
    for key in ("limit_find_results", "limit_find_instances", "stable_age"):
        if getattr(spec, key) < 0:
            problems.append((key, "must be 0 or more"))
    if spec.concurrent_jobs < 0:
        problems.append(("concurrent_jobs", "must be 0 (no limit) or more"))
    for name, modality in spec.modalities.items():
        if not modality.aet or len(modality.aet) > MAX_AET_LENGTH:
            problems.append((f"modalities.{name}", f"AE title {modality.aet!r} is not valid"))
        if not _port_ok(modality.port):
            problems.append((f"modalities.{name}", f"port {modality.port!r} is not valid"))
    if spec.postgres is not None and not _port_ok(spec.postgres.port):
        problems.append(("postgres.port", f"must be a TCP port, got {spec.postgres.port!r}"))
    return problems


def _core(spec: OrthancSpec) -> dict[str, Any]:
    return {
        "Name": spec.name,
        "StorageDirectory": str(spec.storage_dir),
        "IndexDirectory": str(spec.index_dir),
        "StorageCompression": spec.compression,
        "StoreMD5ForAttachments": spec.store_md5,
        "SaveJobs": spec.save_jobs,
        "ConcurrentJobs": spec.concurrent_jobs,
        "StableAge": spec.stable_age,
        "LimitFindResults": spec.limit_find_results,
        "LimitFindInstances": spec.limit_find_instances,
    }


def _http(spec: OrthancSpec) -> dict[str, Any]:
    section: dict[str, Any] = {
        "HttpServerEnabled": True,
        "HttpPort": spec.http_port,
        "HttpDescribeErrors": True,
        "RemoteAccessAllowed": not spec.loopback,
        "AuthenticationEnabled": bool(spec.http_users),
    }
    if spec.http_users:
        section["RegisteredUsers"] = dict(spec.http_users)
    return section


def _dicom(spec: OrthancSpec) -> dict[str, Any]:
    return {
        "DicomServerEnabled": True,
        "DicomAet": spec.aet,
        "DicomPort": spec.dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowFind": spec.always_allow_find,
        "DicomAlwaysAllowStore": spec.always_allow_store,
        "DicomAlwaysAllowGet": spec.always_allow_get,
        "DicomAlwaysAllowMove": spec.always_allow_move,
        "DicomModalities": {
            name: [modality.aet, modality.host, modality.port]
            for name, modality in spec.modalities.items()
        },
    }


def _tls(tls: DicomTlsSpec | None) -> dict[str, Any]:
    if tls is None:
        return {"DicomTlsEnabled": False}
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(tls.certificate),
        "DicomTlsPrivateKey": str(tls.private_key),
        "DicomTlsTrustedCertificates": str(tls.trusted_certificates),
        "DicomTlsRemoteCertificateRequired": tls.remote_certificate_required,
    }


def _postgres(pg: PostgresIndexSpec | None) -> dict[str, Any]:
    if pg is None:
        return {}
    return {
        "Plugins": [POSTGRES_INDEX_PLUGIN],
        "PostgreSQL": {
            "EnableIndex": True,
            "EnableStorage": False,
            "Host": pg.host,
            "Port": pg.port,
            "Database": pg.database,
            "Username": pg.user,
            "Password": pg.password,
            "Lock": False,
        },
    }


def render(spec: OrthancSpec) -> dict[str, Any]:
    """Return the Orthanc 1.10 configuration for ``spec`` as a JSON-ready dict.

    ``spec.extra`` is merged last (top-level keys replace drctl's).
    """
    config: dict[str, Any] = {}
    for section in (_core(spec), _http(spec), _dicom(spec), _tls(spec.tls)):
        config.update(section)
    config.update(_postgres(spec.postgres))
    config.update(spec.extra)
    return config


def write(spec: OrthancSpec, path: str | Path) -> Path:
    """Write the configuration of ``spec`` to ``path`` (mode 0600: it may hold passwords)
    and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600, exist_ok=True)
    target.chmod(0o600)
    target.write_text(json.dumps(render(spec), indent=2, sort_keys=False) + "\n")
    return target
