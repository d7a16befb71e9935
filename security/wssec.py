"""Verification of WS-Security X.509 signatures on SOAP 1.1 X-Road messages (SPEC 5.1).

Why our own verifier on lxml exclusive C14N and ``cryptography`` rather than signxml's
``XMLVerifier``: the defence against signature wrapping is an *identity* check, "the element
the signature covers is the very ``soap:Body`` element that is the Envelope's child", and the
same for the Timestamp and the X-Road headers. signxml resolves references internally and
hands back re-parsed copies of what was signed, so the link to the live element is lost, and
it knows neither ``wsu:Id`` uniqueness nor the ``SecurityTokenReference`` key form. Resolving
every reference ourselves through one `IdIndex` keeps that link, lets us refuse an ambiguous
Id, and costs one C14N per reference with no re-parsing of the document.

Interop with implementations nobody here wrote is proven by the tests: messages signed by
zeep's ``BinarySignature`` (xmlsec) verify here, and messages from `sign_soap` verify in xmlsec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lxml import etree

from security.certs import TrustStore, ValidatedSigner, validate_signer
from security.errors import InvalidSignatureValue, MissingSignature, SecurityError, StaleMessage
from security.signedinfo import SignatureParts, read_signature
from security.wstoken import IdIndex, SignedTimestamp, read_timestamp, signer_certificates
from security.xmldsig import DS, REPR, SOAP11, WSSE, WSU, XROAD, exc_c14n, verify_value

__all__ = ["STRICT_HEADERS", "SignaturePolicy", "VerifiedSoap", "verify_soap_signature"]

SignaturePolicy = Literal["strict", "standard"]
"""``strict``: Body, Timestamp, client, service and id signed; ``standard``: Body (+Timestamp)."""

STRICT_HEADERS = ("client", "service", "id")


@dataclass(frozen=True, slots=True)
class VerifiedSoap:
    """What a valid signature proved about one envelope.

    ``signed_body`` is the envelope's own ``soap:Body`` element (identity-checked, not a
    copy); ``signed_header_names`` are the local names of the X-Road headers (direct
    children of ``soap:Header``, each present once) that the signature covers. Everything
    downstream must read only these.

    ``signed_info_digest`` is the hex SHA-256 of the canonical SignedInfo: what the key
    actually signed. Unlike the signature value (ECDSA signatures are malleable: (r, s) and
    (r, n - s) both verify) or an unsigned ``xrd:id``, nobody without the key can produce a
    second message with another digest that verifies, so replay protection keys on it.
    """

    signer: ValidatedSigner
    signed_body: etree._Element
    signed_header_names: frozenset[str]
    timestamp_created: datetime | None
    signature_value_digest: str
    signature_method: str
    signed_info_digest: str = ""


@dataclass(frozen=True, slots=True)
class _Located:
    header: etree._Element
    body: etree._Element
    security: etree._Element
    signature: etree._Element


def _soap(name: str) -> str:
    return f"{{{SOAP11}}}{name}"


def _locate(envelope: etree._Element) -> _Located:
    if envelope.tag != _soap("Envelope"):
        raise InvalidSignatureValue("the document is not a SOAP 1.1 Envelope")
    headers = list(envelope.iterchildren(_soap("Header")))
    bodies = list(envelope.iterchildren(_soap("Body")))
    if len(bodies) != 1 or len(headers) > 1:
        raise InvalidSignatureValue("the Envelope must have one Header and exactly one Body")
    if not headers:
        raise MissingSignature("the message has no SOAP Header and so no signature")
    securities = list(headers[0].iterchildren(f"{{{WSSE}}}Security"))
    if len(securities) > 1:
        raise InvalidSignatureValue("the message has more than one wsse:Security header")
    signatures = list(envelope.iter(f"{{{DS}}}Signature"))
    if not securities:
        raise MissingSignature("the message has no wsse:Security header")
    if not signatures:
        raise MissingSignature("the wsse:Security header holds no ds:Signature")
    if len(signatures) > 1:
        raise InvalidSignatureValue("the message holds more than one ds:Signature")
    if signatures[0].getparent() is not securities[0]:
        raise InvalidSignatureValue("the ds:Signature is not a child of the wsse:Security header")
    return _Located(headers[0], bodies[0], securities[0], signatures[0])


def _xroad_headers(header: etree._Element) -> dict[str, list[etree._Element]]:
    found: dict[str, list[etree._Element]] = {}
    for child in header.iterchildren(etree.Element):
        qname = etree.QName(child)
        if qname.namespace == XROAD or (
            qname.namespace == REPR and qname.localname == "representedParty"
        ):
            found.setdefault(qname.localname, []).append(child)
    return found


def _timestamp(security: etree._Element) -> etree._Element | None:
    stamps = list(security.iterchildren(f"{{{WSU}}}Timestamp"))
    if len(stamps) > 1:
        raise InvalidSignatureValue("the Security header has more than one wsu:Timestamp")
    return stamps[0] if stamps else None


def _check_coverage(
    located: _Located, targets: list[etree._Element], policy: SignaturePolicy
) -> tuple[frozenset[str], etree._Element | None]:
    """Which of the elements the envelope exposes are signed; refuse what policy lacks."""
    signed = {id(target) for target in targets}
    # Ids of live elements are stable while ``targets`` holds references to them.
    if id(located.body) not in signed:
        if any(target.tag == _soap("Body") for target in targets):
            raise InvalidSignatureValue(
                "the signed Body is not the Envelope's Body (signature wrapping)"
            )
        raise InvalidSignatureValue("the signature does not cover the soap:Body")
    timestamp = _timestamp(located.security)
    if timestamp is not None and id(timestamp) not in signed:
        raise InvalidSignatureValue("the wsu:Timestamp is present but not signed")
    headers = _xroad_headers(located.header)
    names = frozenset(
        name
        for name, elements in headers.items()
        if len(elements) == 1 and id(elements[0]) in signed
    )
    if policy == "strict":
        if timestamp is None:
            raise InvalidSignatureValue("strict policy requires a signed wsu:Timestamp")
        for name in STRICT_HEADERS:
            if len(headers.get(name, [])) > 1:
                raise InvalidSignatureValue(f"X-Road header {name!r} occurs more than once")
            if name not in names:
                raise InvalidSignatureValue(
                    f"strict policy requires a signed X-Road {name!r} header in soap:Header"
                )
    return names, timestamp


def _check_digests(parts: SignatureParts, targets: list[etree._Element]) -> None:
    for reference, target in zip(parts.references, targets, strict=True):
        canonical = exc_c14n(target, reference.inclusive_prefixes)
        computed = hashlib.new(reference.digest.name, canonical).digest()
        if not hmac.compare_digest(computed, reference.digest_value):
            name = etree.QName(target).localname
            raise InvalidSignatureValue(
                f"digest of reference #{reference.target_id} ({name}) does not match"
            )


def _check_fresh(stamp: SignedTimestamp, now: datetime, skew: timedelta) -> None:
    if stamp.created > now + skew:
        raise StaleMessage(f"the message timestamp {stamp.created.isoformat()} is in the future")
    if now - stamp.created > skew:
        raise StaleMessage(
            f"the message timestamp {stamp.created.isoformat()} is older than "
            f"{int(skew.total_seconds())} s"
        )
    if stamp.expires is not None and now > stamp.expires:
        raise StaleMessage(f"the message expired at {stamp.expires.isoformat()}")


def verify_soap_signature(
    envelope: etree._Element,
    *,
    policy: SignaturePolicy,
    trust: TrustStore,
    now: datetime,
    max_clock_skew: timedelta,
) -> VerifiedSoap:
    """Verify the WS-Security signature of ``envelope`` under ``policy`` at ``now``.

    Raises `MissingSignature`, `InvalidSignatureValue`, `CertValidation` or `StaleMessage`.
    On success, comments inside the signed elements are removed in place: exclusive C14N
    without comments does not sign them, so a comment could otherwise split a signed text
    node and make ``.text`` read less than was signed. Nothing else in the tree changes.
    """
    if now.tzinfo is None:
        raise SecurityError("verification time must be timezone-aware")
    # 1. Locate the Body, the one Security header and the one Signature in the whole document.
    located = _locate(envelope)
    # 2. Read SignedInfo, refusing every algorithm and transform SPEC 5.1 does not allow.
    parts = read_signature(located.signature)
    # 3. Resolve each reference to exactly one element (duplicate Ids refused).
    ids = IdIndex(envelope)
    targets = [ids.resolve(reference.target_id) for reference in parts.references]
    if len({id(target) for target in targets}) != len(targets):
        raise InvalidSignatureValue("the signature references one element more than once")
    # 4. The signed elements must be the ones the envelope exposes (anti-wrapping).
    header_names, timestamp = _check_coverage(located, targets, policy)
    # 5. The signer's certificate must chain to a trust anchor and be fit for signing.
    certificate, intermediates = signer_certificates(parts.key_info, located.security, ids)
    signer = validate_signer(certificate, intermediates, trust, now)
    # 6. The signature value over canonical SignedInfo, then 7. every reference digest.
    signed_info = exc_c14n(parts.signed_info, parts.inclusive_prefixes)
    verify_value(parts.method, certificate.public_key(), parts.signature_value, signed_info)
    _check_digests(parts, targets)
    # 8. Freshness, read only from the signed Timestamp.
    created: datetime | None = None
    if timestamp is not None:
        stamp = read_timestamp(timestamp)
        _check_fresh(stamp, now, max_clock_skew)
        created = stamp.created
    # 9. Make the signed elements read exactly as signed (see the docstring).
    for target in targets:
        etree.strip_tags(target, etree.Comment)
    return VerifiedSoap(
        signer=signer,
        signed_body=located.body,
        signed_header_names=header_names,
        timestamp_created=created,
        signature_value_digest=base64.b64encode(
            hashlib.sha512(parts.signature_value).digest()
        ).decode(),
        signature_method=parts.method.uri,
        signed_info_digest=hashlib.sha256(signed_info).hexdigest(),
    )
