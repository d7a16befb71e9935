"""OCSP (RFC 6960) without I/O: build a request with a nonce, verify a response.

A response is believed only when

1. its status is ``successful`` (otherwise the responder did not answer: unavailable);
2. it is signed by the certificate's issuing CA itself, or by a delegated responder whose
   certificate is included in the response, was issued directly by that CA, carries the
   OCSPSigning extended key usage and is valid now (RFC 6960 4.2.2.2); anything else is an
   unauthorised responder and refused;
3. the signature verifies (RSA PKCS#1 v1.5, ECDSA or Ed25519 over SHA-2);
4. it echoes our nonce, if it echoes one at all (precomputed responses carry none);
5. it holds a single response for exactly our CertID (issuer name and key hash, serial);
6. thisUpdate is not in the future and the answer is fresh: nextUpdate not passed and
   thisUpdate no older than the configured ``max_age``.

Only then does its good/revoked/unknown count (``security.revocation`` turns revoked and
unknown into refusals).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    SignatureAlgorithmOID,
)

from security.errors import CertValidation
from security.revocation_base import (
    CertStatus,
    RevocationConfig,
    RevocationFacts,
    RevocationUnavailable,
    check_window,
)

__all__ = ["OcspQuery", "build_ocsp_query", "ocsp_url_of", "verify_ocsp_response"]

_RSA_PKCS1 = {
    SignatureAlgorithmOID.RSA_WITH_SHA256,
    SignatureAlgorithmOID.RSA_WITH_SHA384,
    SignatureAlgorithmOID.RSA_WITH_SHA512,
}
_ECDSA = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512,
}
_STATUS: dict[ocsp.OCSPCertStatus, CertStatus] = {
    ocsp.OCSPCertStatus.GOOD: "good",
    ocsp.OCSPCertStatus.REVOKED: "revoked",
    ocsp.OCSPCertStatus.UNKNOWN: "unknown",
}


@dataclass(frozen=True, slots=True)
class OcspQuery:
    """An OCSP request for one certificate, its DER encoding and the nonce it carries."""

    request: ocsp.OCSPRequest
    der: bytes
    nonce: bytes


def ocsp_url_of(cert: x509.Certificate) -> str | None:
    """The first http(s) OCSP responder URL in the certificate's AIA extension, or None."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for description in access:
        location = description.access_location
        if (
            description.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(location, x509.UniformResourceIdentifier)
            and location.value.startswith(("http://", "https://"))
        ):
            return location.value
    return None


def build_ocsp_query(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes) -> OcspQuery:
    """An OCSP request for ``cert`` issued by ``issuer``, with the nonce extension."""
    # The CertID hash only names the issuer; SHA-1 is what every responder understands
    # (RFC 5019 2.1.1) and does not carry any security here.
    builder = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 (CertID, see above)
        .add_extension(x509.OCSPNonce(nonce), critical=False)
    )
    request = builder.build()
    return OcspQuery(request, request.public_bytes(Encoding.DER), nonce)


def _key_hash(cert: x509.Certificate) -> bytes:
    # RFC 6960 ResponderID byKey: SHA-1 of the subjectPublicKey bits, which is exactly
    # RFC 5280's method (1) for the subject key identifier.
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _names(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return cert.subject == response.responder_name
    return response.responder_key_hash == _key_hash(cert)


def _authorise(delegate: x509.Certificate, issuer: x509.Certificate, now: datetime) -> None:
    who = delegate.subject.rfc4514_string()
    try:
        delegate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertValidation(
            f"OCSP response is signed by {who}, which the certificate's CA did not issue "
            "(unauthorised responder)"
        ) from exc
    try:
        usages = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise CertValidation(
            f"OCSP responder {who} has no OCSPSigning extended key usage (unauthorised responder)"
        ) from exc
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        raise CertValidation(
            f"OCSP responder {who} has no OCSPSigning extended key usage (unauthorised responder)"
        )
    if not delegate.not_valid_before_utc <= now <= delegate.not_valid_after_utc:
        raise CertValidation(f"OCSP responder certificate {who} is not valid at {now.isoformat()}")


def _responder(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime
) -> x509.Certificate:
    if _names(response, issuer):
        return issuer
    for delegate in response.certificates:
        if _names(response, delegate):
            _authorise(delegate, issuer, now)
            return delegate
    raise CertValidation(
        "OCSP response is signed by a responder that is neither the certificate's CA nor a "
        "certificate included in the response (unauthorised responder)"
    )


def _hash(response: ocsp.OCSPResponse) -> hashes.HashAlgorithm:
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        raise CertValidation("OCSP response signature names no hash algorithm")
    return algorithm


def _verify_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    oid = response.signature_algorithm_oid
    data, signature = response.tbs_response_bytes, response.signature
    try:
        if isinstance(key, rsa.RSAPublicKey) and oid in _RSA_PKCS1:
            key.verify(signature, data, padding.PKCS1v15(), _hash(response))
        elif isinstance(key, ec.EllipticCurvePublicKey) and oid in _ECDSA:
            key.verify(signature, data, ec.ECDSA(_hash(response)))
        elif isinstance(key, ed25519.Ed25519PublicKey) and oid == SignatureAlgorithmOID.ED25519:
            key.verify(signature, data)
        else:
            raise CertValidation(
                f"OCSP response signature algorithm {oid.dotted_string} is not accepted "
                f"for a {type(key).__name__}"
            )
    except (InvalidSignature, UnsupportedAlgorithm) as exc:
        raise CertValidation("OCSP response signature does not verify") from exc


def _check_nonce(response: ocsp.OCSPResponse, query: OcspQuery, config: RevocationConfig) -> None:
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        if config.require_nonce:
            raise CertValidation("OCSP response does not echo the request nonce") from None
        return
    if echoed != query.nonce:
        raise CertValidation("OCSP response nonce does not match the request (replayed answer?)")


def _single(response: ocsp.OCSPResponse, query: OcspQuery, source: str) -> RevocationFacts:
    asked = query.request
    for single in response.responses:
        if (
            single.serial_number == asked.serial_number
            and single.issuer_key_hash == asked.issuer_key_hash
            and single.issuer_name_hash == asked.issuer_name_hash
            and single.hash_algorithm.name == asked.hash_algorithm.name
        ):
            reason = single.revocation_reason
            return RevocationFacts(
                status=_STATUS[single.certificate_status],
                this_update=single.this_update_utc,
                next_update=single.next_update_utc,
                revoked_at=single.revocation_time_utc,
                reason=reason.value if reason is not None else None,
            )
    raise RevocationUnavailable(f"OCSP response from {source} has no status for the certificate")


def verify_ocsp_response(
    data: bytes,
    query: OcspQuery,
    issuer: x509.Certificate,
    now: datetime,
    config: RevocationConfig,
    *,
    source: str,
) -> RevocationFacts:
    """Verify the DER OCSP response ``data`` to ``query`` (see the module docstring).

    Raises `RevocationUnavailable` when there is no usable answer and `CertValidation` when
    the answer is forged, unauthorised or replayed. ``source`` (the URL) goes into messages.
    """
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise RevocationUnavailable(
            f"OCSP responder {source} sent no OCSP response", source
        ) from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        status = response.response_status.name.lower()
        raise RevocationUnavailable(f"OCSP responder {source} answered {status}", source)
    try:
        signer = _responder(response, issuer, now)
        _verify_signature(response, signer)
        _check_nonce(response, query, config)
        facts = _single(response, query, source)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        # cryptography parses the inner structures lazily: a malformed part surfaces here.
        raise RevocationUnavailable(
            f"OCSP response from {source} is malformed: {exc}", source
        ) from exc
    check_window(
        facts.this_update,
        facts.next_update,
        now,
        config,
        what="OCSP response",
        source=source,
        max_age=config.max_age,
    )
    return facts
