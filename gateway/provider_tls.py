"""TLS towards providers: verification and client certificate per service (SPEC 6, 7).

Contexts are built once per distinct TLS setting and reused; a registry reload that changes a
service's TLS files gets a new context because the settings are the cache key.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

from gateway.errors import GatewayError
from gateway.tls import TlsKeyError, load_tls_pair
from registry import ServiceEntry

__all__ = ["ProviderTlsError", "provider_ssl"]


class ProviderTlsError(GatewayError):
    """The service's TLS files cannot be used (unreadable, not PEM, key not matching)."""

    code = "InternalError"


@lru_cache(maxsize=256)
def _context(
    verify: bool,
    cas: tuple[Path, ...],
    cert: Path | None,
    key: Path | None,
    passphrase: bytes | None,
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cas:
        context.load_verify_locations(cadata="".join(p.read_text("ascii") for p in cas))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        load_tls_pair(context, cert, key, passphrase)
    return context


def provider_ssl(service: ServiceEntry, passphrase: bytes | None = None) -> ssl.SSLContext | bool:
    """The TLS context for calling ``service``; ``True`` (defaults) for plain http URLs.

    ``passphrase`` decrypts an encrypted client key (the gateway's ``keys.passphrase_*``).
    """
    if not service.url.startswith("https://"):
        return True
    try:
        return _context(
            service.tls_verify,
            tuple(service.tls_ca_certificates),
            service.tls_client_certificate,
            service.tls_client_key,
            passphrase,
        )
    except TlsKeyError as exc:
        raise ProviderTlsError(
            f"the TLS settings of service {service.id} cannot be used: {exc}"
        ) from exc
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ProviderTlsError(f"the TLS settings of service {service.id} cannot be used") from exc
