"""TLS towards providers: verification and client certificate per service (SPEC 6, 7).

`ProviderTls` holds the contexts of one registry snapshot: each distinct TLS setting is
built once, on first use, in a worker thread (the files are read then), and reused. A
registry reload gives the new environment a new `ProviderTls`, so files replaced in place
(a renewed CA certificate under the same name) are read again from the reload on, and
exchanges in flight keep the contexts they started with.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from gateway.errors import GatewayError
from gateway.tls import TlsKeyError, load_tls_pair
from registry import ServiceEntry

__all__ = ["ProviderTls", "ProviderTlsError"]

_Setting = tuple[bool, tuple[Path, ...], Path | None, Path | None]


class ProviderTlsError(GatewayError):
    """The service's TLS files cannot be used (unreadable, not PEM, key not matching)."""

    code = "InternalError"


class ProviderTls:
    """The TLS contexts for calling providers under one registry snapshot.

    ``passphrase`` decrypts encrypted client keys (the gateway's ``keys.passphrase_*``).
    Failed builds are not kept: the next call tries again.
    """

    def __init__(self, passphrase: bytes | None = None) -> None:
        self._passphrase = passphrase
        self._contexts: dict[_Setting, ssl.SSLContext] = {}

    async def context(self, service: ServiceEntry) -> ssl.SSLContext | bool:
        """The TLS context for calling ``service``; ``True`` (defaults) for plain http URLs;
        raises `ProviderTlsError`."""
        if not service.url.startswith("https://"):
            return True
        setting: _Setting = (
            service.tls_verify,
            tuple(service.tls_ca_certificates),
            service.tls_client_certificate,
            service.tls_client_key,
        )
        found = self._contexts.get(setting)
        if found is not None:
            return found
        try:
            built = await asyncio.to_thread(_build, setting, self._passphrase)
        except TlsKeyError as exc:
            raise ProviderTlsError(
                f"the TLS settings of service {service.id} cannot be used: {exc}"
            ) from exc
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ProviderTlsError(
                f"the TLS settings of service {service.id} cannot be used"
            ) from exc
        return self._contexts.setdefault(setting, built)


def _build(setting: _Setting, passphrase: bytes | None) -> ssl.SSLContext:
    verify, cas, cert, key = setting
    if cas:  # the service's CAs alone: the system's would let any public CA speak for it
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata="".join(p.read_text("ascii") for p in cas))
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        load_tls_pair(context, cert, key, passphrase)
    return context
