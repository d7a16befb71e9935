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

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import GatewayError
from gateway.settings import ClientTlsSettings
from registry import ClientEntry, Registry

__all__ = [
    "TlsAuthError",
    "check_tls_client",
    "peer_certificate",
    "server_ssl_context",
    "trust_registry_certs",
]


class TlsAuthError(GatewayError):
    """The HTTPS client certificate is missing or not registered for the client."""

    code = "SslAuthenticationFailed"


def trust_registry_certs(context: ssl.SSLContext, registry: Registry) -> None:
    """Let the handshake accept chains to the trust anchors and the pinned TLS certificates.

    OpenSSL can only add to a context's trust store, so a certificate removed from the
    registry is still accepted by the handshake until restart; `check_tls_client` refuses it.
    """
    pems = [c.public_bytes(Encoding.PEM).decode("ascii") for c in registry.trust_anchors]
    for entry in registry.all_clients():
        pems.extend(c.public_bytes(Encoding.PEM).decode("ascii") for c in entry.tls_certificates)
    if pems:
        context.load_verify_locations(cadata="".join(pems))


def server_ssl_context(settings: ClientTlsSettings, registry: Registry) -> ssl.SSLContext:
    """The TLS context of the HTTPS client port (TLS 1.2+, client certificate optional)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.certificate, settings.key)
    context.verify_mode = ssl.CERT_OPTIONAL
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
