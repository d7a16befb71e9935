"""The HTTPS client port (SPEC 4, X-Road SSLAUTH): server certificate and client certificates.

The TLS handshake asks for a client certificate but does not require one: a client with
``auth: signature`` may connect without. Chains are checked during the handshake against the
registry's trust anchors and the TLS certificates pinned in it (a pinned self-signed
certificate is its own anchor); *which* client a certificate speaks for is decided after the
handshake, per subsystem, by `check_tls_client`.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import GatewayError
from gateway.settings import ClientTlsSettings
from registry import ClientEntry, Registry

__all__ = [
    "TlsAuthError",
    "TlsKeyError",
    "check_tls_client",
    "key_password",
    "peer_certificate",
    "server_ssl_context",
    "trust_registry_certs",
]


class TlsAuthError(GatewayError):
    """The HTTPS client certificate is missing or not registered for the client."""

    code = "SslAuthenticationFailed"


class TlsKeyError(GatewayError):
    """A TLS certificate or key file cannot be used (unreadable, wrong passphrase, mismatch)."""

    code = "InternalError"


def key_password(passphrase: bytes | None, key: Path | None) -> Callable[[], bytes]:
    """The ``password`` callable for ``load_cert_chain``.

    Always a callable: given no password, OpenSSL would prompt on the terminal for an
    encrypted key and hang a service. Without a passphrase it raises instead.
    """

    def password() -> bytes:
        if passphrase is None:
            raise TlsKeyError(
                f"the TLS key {key} is encrypted; set keys.passphrase_file or the "
                "variable named by keys.passphrase_env"
            )
        return passphrase

    return password


def load_tls_pair(
    context: ssl.SSLContext, certificate: Path, key: Path | None, passphrase: bytes | None
) -> None:
    """Load a certificate and its (possibly encrypted) key into ``context``."""
    try:
        context.load_cert_chain(certificate, key, password=key_password(passphrase, key))
    except TlsKeyError:
        raise
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise TlsKeyError(
            f"cannot load the TLS certificate {certificate} with key {key}: {reason}"
        ) from exc


def trust_registry_certs(context: ssl.SSLContext, registry: Registry) -> None:
    """Let the handshake accept chains to the trust anchors and the pinned TLS certificates.

    OpenSSL can only add to a context's trust store, so a certificate removed from the
    registry is still accepted by the handshake until restart; `check_tls_client` refuses it.
    """
    # Configured intermediates help build client chains; OpenSSL still requires the chain to
    # end at a self-signed anchor (no partial chains, see `server_ssl_context`).
    cas = [*registry.trust_anchors, *registry.intermediates]
    pems = [c.public_bytes(Encoding.PEM).decode("ascii") for c in cas]
    for entry in registry.all_clients():
        pems.extend(c.public_bytes(Encoding.PEM).decode("ascii") for c in entry.tls_certificates)
    if pems:
        context.load_verify_locations(cadata="".join(pems))


def server_ssl_context(
    settings: ClientTlsSettings, registry: Registry, passphrase: bytes | None = None
) -> ssl.SSLContext:
    """The TLS context of the HTTPS client port (TLS 1.2+, client certificate optional).

    ``passphrase`` decrypts an encrypted server key (`KeySettings.passphrase`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_tls_pair(context, settings.certificate, settings.key, passphrase)
    context.verify_mode = ssl.CERT_OPTIONAL
    # A configured intermediate is never an anchor on its own.
    context.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN
    trust_registry_certs(context, registry)
    return context


def check_tls_client(entry: ClientEntry, der: bytes | None) -> str:
    """The thumbprint of the HTTPS client certificate if it is registered for ``entry``."""
    if der is None:
        raise TlsAuthError(f"client {entry.id} must connect over HTTPS with its TLS certificate")
    thumbprint = hashlib.sha256(der).hexdigest()
    if thumbprint not in entry.tls_thumbprints:
        raise TlsAuthError(f"the TLS client certificate is not registered for client {entry.id}")
    return thumbprint


def peer_certificate(request: web.Request) -> bytes | None:
    """The TLS client certificate (DER) the handshake accepted, if any."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None
