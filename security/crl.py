"""CRLs (RFC 5280 section 5) without I/O: verify a CRL against its issuer, look up a serial.

A CRL is believed only when it names the certificate's issuing CA as its issuer, that CA may
sign CRLs (cRLSign when it has a key usage extension), its signature verifies with the CA's
key, it is a complete CRL (no delta CRL, no partial scope), its thisUpdate is not in the
future and its nextUpdate has not passed. A CRL that fails the issuer or signature checks is
refused outright (`CertValidation`); one that is out of date or unreadable is unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from security.errors import CertValidation
from security.revocation_base import (
    RevocationConfig,
    RevocationFacts,
    RevocationUnavailable,
    check_window,
)

__all__ = ["VerifiedCrl", "crl_status", "crl_url_of", "verify_crl"]

_CRL_KEYS = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)


@dataclass(frozen=True, slots=True)
class VerifiedCrl:
    """A CRL whose issuer and signature were checked, with its validity window."""

    crl: x509.CertificateRevocationList
    this_update: datetime
    next_update: datetime | None
    source: str


def crl_url_of(cert: x509.Certificate) -> str | None:
    """The first http(s) URL among the certificate's CRL distribution points, or None."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(
                ("http://", "https://")
            ):
                return name.value
    return None


def _parse(data: bytes, source: str) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise RevocationUnavailable(f"{source} did not serve a CRL", source) from exc


def _check_issuer(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> None:
    if crl.issuer != issuer.subject:
        raise CertValidation(
            f"the CRL is issued by {crl.issuer.rfc4514_string()}, not by the certificate's CA"
        )
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.crl_sign:
        raise CertValidation("the certificate's CA may not sign CRLs (no cRLSign key usage)")
    key = issuer.public_key()
    if not isinstance(key, _CRL_KEYS):
        raise CertValidation(f"a CRL signed with a {type(key).__name__} cannot be checked")
    try:
        valid = crl.is_signature_valid(key)
    except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
        raise CertValidation("the CRL signature cannot be checked with the CA's key") from exc
    if not valid:
        raise CertValidation("the CRL signature does not verify with the certificate's CA key")


def _check_scope(crl: x509.CertificateRevocationList, source: str) -> None:
    # A delta CRL or a CRL for part of the certificates would say "good" about certificates
    # it does not cover; obmin uses complete CRLs only.
    for extension in crl.extensions:
        value = extension.value
        if isinstance(value, x509.DeltaCRLIndicator):
            raise RevocationUnavailable(f"{source} serves a delta CRL", source)
        if isinstance(value, x509.IssuingDistributionPoint) and (
            value.only_contains_user_certs
            or value.only_contains_ca_certs
            or value.only_contains_attribute_certs
            or value.only_some_reasons is not None
            or value.indirect_crl
        ):
            raise RevocationUnavailable(f"{source} serves a partial or indirect CRL", source)
        if extension.critical and not isinstance(
            value, (x509.IssuingDistributionPoint, x509.CRLNumber, x509.AuthorityKeyIdentifier)
        ):
            raise RevocationUnavailable(
                f"the CRL from {source} has an unknown critical extension", source
            )


def verify_crl(
    data: bytes,
    issuer: x509.Certificate,
    now: datetime,
    config: RevocationConfig,
    *,
    source: str,
) -> VerifiedCrl:
    """Parse (PEM or DER) and verify the CRL ``data`` from ``source`` (see the docstring)."""
    crl = _parse(data, source)
    try:
        _check_issuer(crl, issuer)
        _check_scope(crl, source)
        this_update, next_update = crl.last_update_utc, crl.next_update_utc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RevocationUnavailable(f"the CRL from {source} is malformed: {exc}", source) from exc
    # Without nextUpdate the configured freshness is the only bound.
    check_window(
        this_update,
        next_update,
        now,
        config,
        what="CRL",
        source=source,
        max_age=config.max_age if next_update is None else None,
    )
    return VerifiedCrl(crl, this_update, next_update, source)


def crl_status(verified: VerifiedCrl, serial: int) -> RevocationFacts:
    """What the verified CRL says about the certificate with ``serial``."""
    try:
        entry = verified.crl.get_revoked_certificate_by_serial_number(serial)
        reason: str | None = None
        if entry is not None:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = None
    except ValueError as exc:
        raise RevocationUnavailable(
            f"the CRL from {verified.source} is malformed: {exc}", verified.source
        ) from exc
    if entry is None:
        return RevocationFacts("good", verified.this_update, verified.next_update)
    return RevocationFacts(
        "revoked",
        verified.this_update,
        verified.next_update,
        revoked_at=entry.revocation_date_utc,
        reason=reason,
    )
