"""obmin's WS-Security signer for SOAP 1.1 X-Road messages (SPEC 5.1, 5.3, 9).

Used by the gateway to sign its responses and by the client SDK to sign requests. The
output is what `verify_soap_signature` accepts under ``strict`` (and what xmlsec verifies):
a ``wsse:Security`` header (without mustUnderstand) holding a ``wsu:Timestamp``, the signer's
``wsse:BinarySecurityToken`` and one ``ds:Signature`` with exclusive C14N, SHA-256 digests
and references to the Body, the Timestamp and the X-Road headers present.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from security.errors import SigningError
from security.pki import SigningKey
from security.signedinfo import read_signature
from security.wssec import STRICT_HEADERS, SignaturePolicy
from security.xmldsig import (
    BASE64_BINARY,
    DIGESTS,
    DS,
    EXC_C14N,
    REPR,
    SIGNATURE_METHODS,
    SOAP11,
    WSSE,
    WSU,
    WSU_ID,
    X509V3,
    XROAD,
    default_method,
    exc_c14n,
    sign_value,
)

__all__ = ["SHA256", "SIGNED_HEADERS", "sign_soap"]

SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

# X-Road headers the signer covers when present (SPEC 3.1 and 5.3).
SIGNED_HEADERS = (
    "client",
    "service",
    "id",
    "userId",
    "issue",
    "protocolVersion",
    "requestHash",
)


def _signing_key(key: CertificateIssuerPrivateKeyTypes) -> SigningKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise SigningError(f"cannot sign with a {type(key).__name__}; use RSA, EC or Ed25519")


def _copy_with_wsu(envelope: etree._Element) -> etree._Element:
    """A copy of ``envelope`` whose root declares the wsu namespace.

    lxml cannot add a declaration to an existing element, and an attribute in an undeclared
    namespace would get an invented ``ns0`` prefix on every signed element; so the root is
    rebuilt with the extra declaration and the children are copied under it.
    """
    nsmap: dict[str | None, str] = dict(envelope.nsmap)
    if WSU not in nsmap.values():
        prefix, n = "wsu", 0
        while prefix in nsmap:
            n += 1
            prefix = f"wsu{n}"
        nsmap[prefix] = WSU
    # lxml-stubs type nsmap keys as str, but None (the default namespace) is what lxml uses.
    root = etree.Element(envelope.tag, nsmap=nsmap)  # type: ignore[arg-type]
    for name, value in envelope.attrib.items():
        root.set(name, value)
    root.text = envelope.text
    for child in envelope:
        root.append(copy.deepcopy(child))
    return root


def _ensure_id(element: etree._Element, kind: str) -> str:
    existing = element.get(WSU_ID)
    if existing:
        return existing
    value = f"{kind}-{uuid.uuid4().hex}"
    element.set(WSU_ID, value)
    return value


def _xsd_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _header_and_body(root: etree._Element) -> tuple[etree._Element, etree._Element]:
    if root.tag != f"{{{SOAP11}}}Envelope":
        raise SigningError("only SOAP 1.1 Envelopes can be signed")
    bodies = list(root.iterchildren(f"{{{SOAP11}}}Body"))
    headers = list(root.iterchildren(f"{{{SOAP11}}}Header"))
    if len(bodies) != 1 or len(headers) > 1:
        raise SigningError("the Envelope must have at most one Header and exactly one Body")
    if headers:
        header = headers[0]
        if header.find(f"{{{WSSE}}}Security") is not None:
            raise SigningError("the Envelope already has a wsse:Security header")
    else:
        header = etree.Element(f"{{{SOAP11}}}Header")
        bodies[0].addprevious(header)
    return header, bodies[0]


def _xroad_targets(header: etree._Element, profile: SignaturePolicy) -> list[etree._Element]:
    targets: list[etree._Element] = []
    present: set[str] = set()
    for child in header.iterchildren(etree.Element):
        qname = etree.QName(child)
        if (qname.namespace == XROAD and qname.localname in SIGNED_HEADERS) or (
            qname.namespace == REPR and qname.localname == "representedParty"
        ):
            if qname.localname in present:
                raise SigningError(f"X-Road header {qname.localname!r} occurs more than once")
            present.add(qname.localname)
            targets.append(child)
    missing = [name for name in STRICT_HEADERS if name not in present]
    if profile == "strict" and missing:
        raise SigningError(f"strict profile needs the X-Road headers {', '.join(missing)}")
    return targets


def _ds(parent: etree._Element, name: str, **attrib: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{DS}}}{name}", attrib)


def _reference(signed_info: etree._Element, target: etree._Element, digest_uri: str) -> None:
    reference = _ds(signed_info, "Reference", URI="#" + str(target.get(WSU_ID)))
    transforms = _ds(reference, "Transforms")
    _ds(transforms, "Transform", Algorithm=EXC_C14N)
    _ds(reference, "DigestMethod", Algorithm=digest_uri)
    digest = hashlib.new(DIGESTS[digest_uri].name, exc_c14n(target)).digest()
    _ds(reference, "DigestValue").text = base64.b64encode(digest).decode("ascii")


def sign_soap(
    envelope: etree._Element,
    *,
    key: CertificateIssuerPrivateKeyTypes,
    certificate: x509.Certificate,
    profile: SignaturePolicy = "strict",
    now: datetime,
    ttl: timedelta = timedelta(minutes=5),
    signature_method: str | None = None,
    digest_method: str = SHA256,
) -> etree._Element:
    """Return a signed copy of ``envelope``; the caller's tree is left untouched.

    ``strict`` adds a Timestamp (Created ``now``, Expires ``now + ttl``) and requires the
    X-Road ``client``, ``service`` and ``id`` headers; ``standard`` signs the Body and the
    X-Road headers present, without a Timestamp. The signature method defaults to
    RSA-SHA256, ECDSA-SHA256/384 or Ed25519 by key type; ``signature_method`` and
    ``digest_method`` take other allowed URIs (RSA-PSS as ``...#sha256-rsa-MGF1``).
    """
    if now.tzinfo is None:
        raise SigningError("now must be timezone-aware")
    signing_key = _signing_key(key)
    if signature_method is None:
        method = default_method(signing_key)
    elif signature_method in SIGNATURE_METHODS:
        method = SIGNATURE_METHODS[signature_method]
    else:
        raise SigningError(f"signature method {signature_method} is not supported")
    if digest_method not in DIGESTS:
        raise SigningError(f"digest method {digest_method} is not supported")
    root = _copy_with_wsu(envelope)
    header, body = _header_and_body(root)
    targets = [body, *_xroad_targets(header, profile)]

    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    if profile == "strict":
        timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp")
        etree.SubElement(timestamp, f"{{{WSU}}}Created").text = _xsd_time(now)
        etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = _xsd_time(now + ttl)
        targets.insert(1, timestamp)
    token = etree.SubElement(
        security,
        f"{{{WSSE}}}BinarySecurityToken",
        {"EncodingType": BASE64_BINARY, "ValueType": X509V3},
    )
    token.text = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")
    token_id = _ensure_id(token, "x509")
    for target in targets:
        _ensure_id(target, etree.QName(target).localname.lower())

    signature = etree.SubElement(security, f"{{{DS}}}Signature", nsmap={"ds": DS})
    signed_info = _ds(signature, "SignedInfo")
    _ds(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
    _ds(signed_info, "SignatureMethod", Algorithm=method.uri)
    for target in targets:
        _reference(signed_info, target, digest_method)
    value = sign_value(method, signing_key, exc_c14n(signed_info))
    _ds(signature, "SignatureValue").text = base64.b64encode(value).decode("ascii")
    key_info = _ds(signature, "KeyInfo")
    token_reference = etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference")
    etree.SubElement(
        token_reference, f"{{{WSSE}}}Reference", {"URI": "#" + token_id, "ValueType": X509V3}
    )
    read_signature(signature)  # our own output must pass our own shape checks
    return root
