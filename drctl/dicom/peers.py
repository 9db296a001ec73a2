"""Who drctl talks DICOM to: a peer's AE title, address and optional TLS settings."""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from dataclasses import dataclass, field

from drctl.errors import UsageError


@dataclass(frozen=True)
class TlsSettings:
    """TLS for DICOM associations (PS3.15 Annex B).

    ``ca_file`` verifies the peer's certificate; ``cert_file``/``key_file`` present
    drctl's own certificate when the peer asks for one. A key that is not a file (an
    ``env:`` or ``command:`` secret) comes as ``key_data`` (PEM text): it is written to a
    private temporary file only while the context loads it. ``key_password`` and
    ``key_data`` are kept out of ``repr`` so they never reach a log line.
    """

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = False
    key_data: str | None = field(default=None, repr=False)

    def context(self) -> ssl.SSLContext:
        """Return a client-side ``ssl.SSLContext`` built from these settings, once (every
        association of these settings shares it).

        Raises :class:`UsageError` when a certificate or key file cannot be loaded (the
        message names the file, never the password).
        """
        return self._context

    @functools.cached_property
    def _context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load TLS CA file {self.ca_file}: {exc}") from exc
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cert_file:
            try:
                if self.key_data is not None:
                    self._load_key_data(ctx)
                else:
                    ctx.load_cert_chain(
                        self.cert_file, keyfile=self.key_file, password=self.key_password
                    )
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(
                    f"cannot load TLS certificate {self.cert_file} / key {self.key_file}: "
                    f"{type(exc).__name__}",
                    hint="check the file paths and the key password reference",
                ) from None
        return ctx

    def _load_key_data(self, ctx: ssl.SSLContext) -> None:
        # ssl loads keys from files only: a 0600 file (mkstemp) that lives for the load
        fd, path = tempfile.mkstemp(prefix="drctl-tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.key_data or "")
            ctx.load_cert_chain(self.cert_file or "", keyfile=path, password=self.key_password)
        finally:
            os.unlink(path)


@dataclass(frozen=True)
class Peer:
    """A DICOM node: its AE title, host, port and, for DICOM over TLS, its settings."""

    aet: str
    host: str
    port: int
    tls: TlsSettings | None = None

    def __str__(self) -> str:
        scheme = "dicom+tls" if self.tls else "dicom"
        return f"{self.aet}@{scheme}://{self.host}:{self.port}"
