"""Who drctl talks DICOM to: a peer's AE title, address and optional TLS settings."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from drctl.errors import UsageError


@dataclass(frozen=True)
class TlsSettings:
    """TLS for DICOM associations (PS3.15 Annex B).

    ``ca_file`` verifies the peer's certificate; ``cert_file``/``key_file`` present
    drctl's own certificate when the peer asks for one. ``key_password`` is kept out of
    ``repr`` so it never reaches a log line.
    """

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = False

    def context(self) -> ssl.SSLContext:
        """Return a client-side ``ssl.SSLContext`` built from these settings.

        Raises :class:`UsageError` when a certificate or key file cannot be loaded (the
        message names the file, never the password).
        """
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load TLS CA file {self.ca_file}: {exc}") from exc
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cert_file:
            try:
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
