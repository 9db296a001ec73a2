"""A small client for Orthanc's REST API, on the standard library only.

Every call returns decoded JSON (or bytes / text where Orthanc answers so). A node that
does not answer raises :class:`~drctl.errors.NodeUnreachable` naming the URL; an HTTP
error status raises :class:`OrthancRestError` with the status and the start of the body.
Proxies from the environment are ignored (a PACS node is addressed directly), and
credentials never appear in URLs, messages or logs.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from drctl.errors import DrctlError, NodeUnreachable

log = logging.getLogger(__name__)

BODY_EXCERPT = 500
RESOURCE_KINDS = frozenset({"patients", "studies", "series", "instances"})


class OrthancRestError(DrctlError):
    """Orthanc answered with an HTTP error status."""

    def __init__(self, message: str, *, status: int, body: str, url: str, **kw: Any):
        super().__init__(message, **kw)
        self.status = status
        self.body = body
        self.url = url


def _strip_userinfo(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _query(params: Mapping[str, Any] | None) -> str:
    """Orthanc flags (``expand``) are bare keys: a value of True renders ``expand``."""
    if not params:
        return ""
    items = []
    for key, value in params.items():
        if value is None or value is False:
            continue
        if value is True:
            items.append(urllib.parse.quote(key))
        else:
            items.append(f"{urllib.parse.quote(key)}={urllib.parse.quote(str(value))}")
    return "?" + "&".join(items) if items else ""


class OrthancRest:
    """REST client of one Orthanc node at ``base_url`` (``http://host:port``)."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ):
        self.base_url = _strip_userinfo(base_url).rstrip("/")
        self.timeout = timeout
        self._auth: str | None = None
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"OrthancRest({self.base_url!r})"

    # --- transport -----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[bytes, str]:
        """Send one request; return the raw body and its content type.

        Raises :class:`NodeUnreachable` when the node does not answer in time and
        :class:`OrthancRestError` for an HTTP error status.
        """
        url = f"{self.base_url}/{path.lstrip('/')}{_query(params)}"
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self._auth:
            req.add_header("Authorization", self._auth)
        log.debug("orthanc %s %s", method, url)
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                return response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")[:BODY_EXCERPT]
            hint = "check the node's RegisteredUsers" if exc.code == 401 else None
            raise OrthancRestError(
                f"Orthanc {method} {url} failed: HTTP {exc.code}",
                status=exc.code,
                body=text,
                url=url,
                hint=hint,
                detail=text,
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(
                f"Orthanc at {self.base_url} does not answer ({method} {url}: {reason})",
                hint="check that the node is running and the URL is right",
            ) from None

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        raw, content_type = self.request(method, path, **kw)
        if not raw:
            return None
        if content_type == "application/json":
            return json.loads(raw)
        return raw.decode("utf-8", "replace")

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path``; returns decoded JSON (text for non-JSON answers)."""
        return self._json("GET", path, params=params)

    def get_bytes(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET ``path``; returns the raw body."""
        return self.request("GET", path, params=params)[0]

    def post(self, path: str, body: Any = None, *, content_type: str | None = None) -> Any:
        """POST ``body`` (bytes as is, anything else as JSON); returns decoded JSON."""
        if body is not None and not isinstance(body, bytes):
            body, content_type = json.dumps(body).encode(), "application/json"
        return self._json(
            "POST", path, body=body if body is not None else b"", content_type=content_type
        )

    def delete_path(self, path: str) -> Any:
        """DELETE ``path``; returns decoded JSON, if any."""
        return self._json("DELETE", path)

    # --- Orthanc resources -------------------------------------------------------------

    def system(self) -> dict[str, Any]:
        """``/system``: version, AE title, ports, database backend."""
        return self.get("/system")

    def statistics(self) -> dict[str, Any]:
        """``/statistics``: resource counts and disk sizes (sizes are strings)."""
        return self.get("/statistics")

    def studies(
        self, expand: bool = True, since: int | None = None, limit: int | None = None
    ) -> list[Any]:
        """``/studies``: all studies, or one page of them (``since`` is an offset)."""
        if limit is not None and since is None:
            since = 0  # Orthanc 1.10 wants both or neither
        return self.get("/studies", {"expand": expand, "since": since, "limit": limit})

    def iter_studies(self, *, expand: bool = True, page_size: int = 1000) -> Iterator[Any]:
        """Yield every study, fetched ``page_size`` at a time (not capped by
        ``LimitFindResults``)."""
        offset = 0
        while True:
            page = self.studies(expand=expand, since=offset, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            offset += len(page)

    def study(self, study_id: str) -> dict[str, Any]:
        return self.get(f"/studies/{study_id}")

    def study_instances(self, study_id: str) -> list[dict[str, Any]]:
        """The instances of a study, expanded (MainDicomTags, FileSize, ...)."""
        return self.get(f"/studies/{study_id}/instances")

    def changes(self, since: int = 0, limit: int = 100) -> dict[str, Any]:
        """One page of the change feed: ``Changes``, ``Done``, ``Last``."""
        return self.get("/changes", {"since": since, "limit": limit})

    def last_change(self) -> int:
        """Sequence number of the newest change (0 on an empty node)."""
        return int(self.get("/changes", {"last": True}).get("Last", 0))

    def instance_file(self, instance_id: str) -> bytes:
        """The DICOM file of an instance as Orthanc stored it (uncompressed)."""
        return self.get_bytes(f"/instances/{instance_id}/file")

    def instance_md5(self, instance_id: str) -> str:
        """MD5 (hex) Orthanc recorded for the instance's DICOM attachment."""
        return self.get_bytes(f"/instances/{instance_id}/attachments/dicom/md5").decode().strip()

    def instance_metadata(self, instance_id: str) -> dict[str, str]:
        """All metadata of an instance (TransferSyntax, SopClassUid, RemoteAET, ...)."""
        return self.get(f"/instances/{instance_id}/metadata", {"expand": True})

    def upload(self, dicom_bytes: bytes) -> dict[str, Any]:
        """Store one Part 10 file; returns Orthanc's answer (``ID``, ``Status``, ...)."""
        return self.post("/instances", dicom_bytes, content_type="application/dicom")

    def delete(self, kind: str, resource_id: str) -> None:
        """Delete a patient/study/series/instance (``kind`` is the plural URL part).
        Raises ValueError for an unknown kind."""
        if kind not in RESOURCE_KINDS:
            raise ValueError(f"unknown Orthanc resource kind {kind!r}")
        self.delete_path(f"/{kind}/{resource_id}")

    def jobs(self, expand: bool = True) -> list[Any]:
        return self.get("/jobs", {"expand": expand})

    def modalities(self) -> dict[str, Any]:
        """Declared DICOM modalities, expanded (name -> AET, Host, Port, ...)."""
        return self.get("/modalities", {"expand": True})
