"""The admin port over HTTPS, and admin callers identified by TLS client certificates.

SPEC 1 and 8: in production the admin port is HTTPS, and auditors authenticate by client
certificate or bearer token. The handshake checks the certificate's chain against
``admin_tls.client_ca`` (a CA for admin callers, not the federation's); *who* the caller is
is decided after the handshake by `match_admin_certificate`, against ``admin_certificates``
(by certificate SHA-256, or by exact subject). Bearer tokens keep working over HTTPS.

Identifying by subject trusts the client CA to issue each subject to one person only;
identifying by SHA-256 pins one certificate (a renewed certificate needs a new entry).
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence

from aiohttp import web
from cryptography import x509

from gateway.settings import AdminCertificate, AdminTlsSettings, SettingsError
from gateway.tls import TlsKeyError, load_tls_pair

__all__ = ["admin_site", "admin_ssl_context", "match_admin_certificate"]


def admin_ssl_context(
    settings: AdminTlsSettings, passphrase: bytes | None = None
) -> ssl.SSLContext:
    """The admin port's TLS context (TLS 1.2+), asking for client certificates from
    ``client_ca``; ``passphrase`` opens an encrypted key (never an OpenSSL prompt). Raises
    `SettingsError` naming the setting that cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        load_tls_pair(context, settings.certificate, settings.key, passphrase)
    except TlsKeyError as exc:
        raise SettingsError(f"admin_tls.certificate/key: {exc}") from exc
    if settings.client_ca is None:
        if settings.require_client_certificate:
            raise SettingsError("admin_tls.require_client_certificate needs admin_tls.client_ca")
        return context
    try:
        context.load_verify_locations(cafile=settings.client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"admin_tls.client_ca: cannot load {settings.client_ca}: {exc}"
        ) from exc
    context.verify_mode = (
        ssl.CERT_REQUIRED if settings.require_client_certificate else ssl.CERT_OPTIONAL
    )
    return context


def admin_site(
    runner: web.AppRunner,
    host: str,
    port: int,
    tls: AdminTlsSettings | None,
    passphrase: bytes | None = None,
) -> web.TCPSite:
    """The admin port's site: HTTPS when ``admin_tls`` is configured, else plain HTTP."""
    context = admin_ssl_context(tls, passphrase) if tls is not None else None
    return web.TCPSite(runner, host, port, ssl_context=context)


def match_admin_certificate(
    entries: Sequence[AdminCertificate], der: bytes
) -> AdminCertificate | None:
    """The configured caller this (handshake-verified) certificate identifies, if any."""
    thumbprint = hashlib.sha256(der).hexdigest()
    subject: x509.Name | None = None
    for entry in entries:
        if entry.sha256 is not None and entry.sha256 == thumbprint:
            return entry
        if entry.subject is not None:
            if subject is None:
                subject = x509.load_der_x509_certificate(der).subject
            if entry.subject_name == subject:
                return entry
    return None
