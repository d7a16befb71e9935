"""Signer certificates: trust anchors, path validation and the identity a certificate speaks for.

SPEC 5.4: a signer certificate must chain to a configured trust anchor, be valid at the time
of the exchange, carry the digitalSignature or nonRepudiation key usage, and not be revoked.
Path building and the CA-side checks are cryptography's X.509 verifier (the same Rust code
that checks TLS chains); the end-entity checks are done here first so that each refusal says
precisely what is wrong. Intermediate CA certificates may come with the message (untrusted
helpers, e.g. further BinarySecurityTokens) or be configured in the `TrustStore`; either way
only a trust anchor is trusted. Revocation is checked afterwards, on the validated path
(`ValidatedSigner.chain`), by ``security.revocation.RevocationChecker``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from registry.errors import InvalidIdentifier
from registry.identifiers import MemberId
from security.errors import CertValidation, PkiError

__all__ = [
    "SIGNING_EKUS",
    "TrustStore",
    "ValidatedSigner",
    "cert_thumbprint",
    "validate_signer",
]

_MIN_RSA_BITS = 2048
# Path building is a search; a message must not make it search through hundreds of
# certificates. X-Road and Trembita chains have one or two intermediates.
_MAX_INTERMEDIATES = 8
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
# Successful validations kept per trust store (least recently used evicted one at a time).
VALIDATION_CACHE_SIZE = 4096

SIGNING_EKUS: frozenset[ObjectIdentifier] = frozenset(
    {
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,  # S/MIME and qualified e-signature certificates
        ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning (RFC 9336)
        ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
    }
)
"""Extended key usages that allow message signing when a signer carries the EKU extension.

A signing certificate without the extension is fine (X-Road and Trembita signing certificates
have none); one whose EKU allows only e.g. serverAuth or clientAuth (a TLS certificate) must
not sign messages: RFC 5280 4.2.1.12 restricts the key to the purposes listed.
"""


def cert_thumbprint(cert: x509.Certificate) -> str:
    """The lowercase hex SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


class TrustStore:
    """The configured trust anchors (CA certificates), ready for path validation.

    ``intermediates`` are configured intermediate CA certificates: not trusted themselves,
    offered to path building with every signer (so that a message need not carry them).
    The anchors are immutable after construction; build a new store when the registry is
    reloaded. The store also keeps up to ``cache_size`` successful validations (LRU).
    """

    __slots__ = ("_anchors", "_cache_size", "_intermediates", "_store", "_validated")

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        *,
        cache_size: int = VALIDATION_CACHE_SIZE,
    ) -> None:
        if cache_size < 1:
            raise PkiError("the validation cache size must be positive")
        self._cache_size = cache_size
        self._anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self._intermediates: tuple[x509.Certificate, ...] = tuple(intermediates)
        self._store: verification.Store | None = None
        # Successful validations by signer certificate (DER SHA-256), reused while ``now``
        # stays inside every certificate's validity on the path and the path's intermediates
        # are still at hand: the outcome depends on nothing else (revocation is separate).
        # Keyed on the signer alone, not on the extra certificates a message carries, so a
        # sender cannot mint keys: only certificates a trusted CA issued ever get in.
        self._validated: OrderedDict[str, tuple[ValidatedSigner, datetime, datetime]] = (
            OrderedDict()
        )
        if self._anchors:
            try:
                self._store = verification.Store(list(self._anchors))
            except (TypeError, ValueError) as exc:
                raise PkiError(f"the trust anchors cannot be used: {exc}") from exc

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The anchor certificates, in configuration order."""
        return self._anchors

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The configured (untrusted) intermediate CA certificates."""
        return self._intermediates

    @property
    def store(self) -> verification.Store | None:
        """cryptography's store of the anchors; None when no anchor is configured."""
        return self._store

    def cached(
        self, thumbprint: str, at: datetime, offered: Sequence[x509.Certificate]
    ) -> ValidatedSigner | None:
        """A validation of the signer ``thumbprint`` still good at ``at``, or None.

        Good means: ``at`` is inside every path certificate's validity, and each intermediate
        of the cached path is configured or among the ``offered`` ones.
        """
        found = self._validated.get(thumbprint)
        if found is None:
            return None
        signer, start, end = found
        if not start <= at <= end:
            return None
        available = {*offered, *self._intermediates}
        if any(cert not in available for cert in signer.chain[1:-1]):
            return None
        self._validated.move_to_end(thumbprint)
        return signer

    def remember(self, signer: ValidatedSigner) -> None:
        """Keep a successful validation, evicting the least recently used beyond the bound."""
        self._validated[signer.thumbprint_sha256] = (
            signer,
            max(c.not_valid_before_utc for c in signer.chain),
            min(c.not_valid_after_utc for c in signer.chain),
        )
        self._validated.move_to_end(signer.thumbprint_sha256)
        while len(self._validated) > self._cache_size:
            self._validated.popitem(last=False)

    @property
    def cache_size(self) -> int:
        """How many validations are cached."""
        return len(self._validated)

    def __repr__(self) -> str:
        return f"TrustStore({len(self._anchors)} anchors, {len(self._intermediates)} intermediates)"


@dataclass(frozen=True, slots=True)
class ValidatedSigner:
    """A signer certificate that passed `validate_signer` at a given time.

    ``member_id`` is the member named by the subject ``serialNumber`` (SPEC 5.4 identity
    binding), or None when the certificate names no valid member identifier; a certificate
    without one can still speak for a subsystem that pins it by thumbprint.

    ``chain`` is the validated path, the signer first and the trust anchor last; revocation
    is checked along it (`issuer` is the CA that issued the signer, `anchor` selects the
    trust anchor's revocation settings).
    """

    certificate: x509.Certificate
    member_id: MemberId | None
    thumbprint_sha256: str
    der: bytes
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def issuer(self) -> x509.Certificate:
        """The CA certificate that issued the signer (an intermediate or the anchor)."""
        if len(self.chain) < 2:
            raise CertValidation("the signer has no validated issuer")
        return self.chain[1]

    @property
    def anchor(self) -> x509.Certificate:
        """The trust anchor the signer chains to."""
        if len(self.chain) < 2:
            raise CertValidation("the signer has no validated trust anchor")
        return self.chain[-1]


def _member_of(cert: x509.Certificate) -> MemberId | None:
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    try:
        return MemberId.parse(values[0].value)
    except InvalidIdentifier:
        return None


def _check_key_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertValidation("signer certificate has no key usage extension") from exc
    if not (usage.digital_signature or usage.content_commitment):
        raise CertValidation(
            "signer certificate key usage allows neither digitalSignature nor nonRepudiation"
        )
    _check_extended_key_usage(cert)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise CertValidation("signer certificate is a CA certificate")


def _check_extended_key_usage(cert: x509.Certificate) -> None:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not SIGNING_EKUS.intersection(usages):
        names = ", ".join(sorted(getattr(u, "_name", u.dotted_string) for u in usages))
        raise CertValidation(
            f"signer certificate's extended key usage ({names or 'empty'}) does not allow "
            "signing messages"
        )


def _check_public_key(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise CertValidation(f"signer RSA key has {key.key_size} bits; at least 2048 needed")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise CertValidation(f"signer EC key uses curve {key.curve.name}, which is not allowed")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CertValidation(f"signer key type {type(key).__name__} is not allowed")


def _ee_key_usage(
    _policy: verification.Policy, _cert: x509.Certificate, usage: x509.KeyUsage
) -> None:
    # Checked again inside the verifier so that the chain result itself is conditional on it.
    if not (usage.digital_signature or usage.content_commitment):
        raise ValueError("key usage allows no signatures")


def _ee_eku(
    _policy: verification.Policy, _cert: x509.Certificate, usages: x509.ExtendedKeyUsage | None
) -> None:
    if usages is not None and not SIGNING_EKUS.intersection(usages):
        raise ValueError("extended key usage does not allow signing")


def _ee_policy() -> verification.ExtensionPolicy:
    # The Web PKI end-entity profile requires a subjectAltName and TLS usages, which signing
    # certificates (X-Road, Trembita, qualified e-signatures) do not carry. So: accept any
    # extension, but require the key usage the SPEC names, and an extended key usage (when
    # present) that allows signing.
    return (
        verification.ExtensionPolicy.permit_all()
        .require_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _ee_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, _ee_eku)
    )


def _reason(exc: verification.VerificationError) -> str:
    text = str(exc).removeprefix("validation failed: ")
    return text.split(" (encountered", 1)[0]


def validate_signer(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustStore,
    now: datetime,
) -> ValidatedSigner:
    """Check that ``cert`` may sign at ``now`` under ``trust``; raise `CertValidation` if not.

    ``intermediates`` are untrusted helpers for path building (certificates that came with
    the message); the trust store's configured intermediates are added to them. Revocation
    is not checked here: it needs network I/O (``security.revocation``).
    """
    if now.tzinfo is None:
        raise CertValidation("validation time must be timezone-aware")
    at = now.astimezone(UTC)
    cached = trust.cached(cert_thumbprint(cert), at, intermediates)
    if cached is not None:
        return cached
    signer = _validate(cert, intermediates, trust, at)
    trust.remember(signer)  # only a validation that succeeded is kept
    return signer


def _validate(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustStore,
    at: datetime,
) -> ValidatedSigner:
    # 1. The end entity itself: validity, usage, key strength (specific messages).
    if at < cert.not_valid_before_utc:
        raise CertValidation(
            f"signer certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
        )
    if at > cert.not_valid_after_utc:
        raise CertValidation(
            f"signer certificate expired on {cert.not_valid_after_utc.isoformat()}"
        )
    _check_key_usage(cert)
    _check_public_key(cert)
    # 2. The path to an anchor, with every CA certificate checked at the same time.
    if trust.store is None:
        raise CertValidation("no trust anchors are configured")
    if len(intermediates) > _MAX_INTERMEDIATES:
        raise CertValidation(
            f"the message carries {len(intermediates)} extra certificates; "
            f"at most {_MAX_INTERMEDIATES} are accepted"
        )
    verifier = (
        verification.PolicyBuilder()
        .store(trust.store)
        .time(at)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=_ee_policy()
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(cert, [*intermediates, *trust.intermediates])
    except verification.VerificationError as exc:
        raise CertValidation(
            f"signer certificate does not chain to a trusted CA: {_reason(exc)}"
        ) from exc
    der = cert.public_bytes(Encoding.DER)
    return ValidatedSigner(
        certificate=cert,
        member_id=_member_of(cert),
        thumbprint_sha256=hashlib.sha256(der).hexdigest(),
        der=der,
        chain=tuple(verified.chain),
    )
