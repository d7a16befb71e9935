"""WS-Security pieces around the signature: the Id index, the signer's token and the Timestamp.

Pure functions over an lxml tree, no I/O. Ids are looked up in one index built with a single
XPath pass, so every reference resolves to exactly one element or the message is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from security.errors import CertValidation, InvalidSignatureValue
from security.xmldsig import BASE64_BINARY, DS, WSSE, WSU, WSU_ID, X509V3, b64decode_strict

__all__ = ["IdIndex", "SignedTimestamp", "read_timestamp", "signer_certificates"]

_ID_XPATH = "//*[@wsu:Id or @Id]"
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")


class IdIndex:
    """Elements by their ``wsu:Id`` or ``Id`` value, for the whole document of ``root``.

    A ``wsu:Id`` value used twice anywhere is refused at once (WS-Security requires them to
    be unique); a plain ``Id`` used twice is refused when something refers to it, since
    business payloads may legitimately repeat an attribute that happens to be named Id.
    """

    __slots__ = ("_by_id",)

    def __init__(self, root: etree._Element) -> None:
        by_id: dict[str, list[etree._Element]] = {}
        wsu_seen: set[str] = set()
        # One C-level pass over the document. (A compiled etree.XPath would be faster by a few
        # microseconds but may not be shared between threads; verification can run in workers.)
        found = root.xpath(_ID_XPATH, namespaces={"wsu": WSU})
        assert isinstance(found, list)
        for element in found:
            if not isinstance(element, etree._Element):
                continue
            wsu_id = element.get(WSU_ID)
            plain_id = element.get("Id")
            if wsu_id is not None:
                if wsu_id in wsu_seen:
                    raise InvalidSignatureValue(f"wsu:Id {wsu_id!r} occurs more than once")
                wsu_seen.add(wsu_id)
            for value in {wsu_id, plain_id} - {None}:
                assert value is not None
                by_id.setdefault(value, []).append(element)
        self._by_id = by_id

    def resolve(self, value: str) -> etree._Element:
        """The one element whose Id is ``value``; refuse a dangling or ambiguous Id."""
        elements = self._by_id.get(value, [])
        if not elements:
            raise InvalidSignatureValue(f"reference #{value} points at no element")
        if len(elements) > 1:
            raise InvalidSignatureValue(f"Id {value!r} occurs more than once (wrapping)")
        return elements[0]


def _parse_certificate(der: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise CertValidation(f"{where} is not a valid X.509 certificate") from exc


def _elements(parent: etree._Element) -> list[etree._Element]:
    return list(parent.iterchildren(etree.Element))


def _from_x509_data(data: etree._Element) -> list[x509.Certificate]:
    certs = [
        _parse_certificate(b64decode_strict(child.text, "X509Certificate"), "X509Certificate")
        for child in data.iterchildren(f"{{{DS}}}X509Certificate")
    ]
    if not certs:
        raise InvalidSignatureValue("ds:X509Data carries no X509Certificate")
    return certs


def _from_token_reference(
    reference: etree._Element, security: etree._Element, ids: IdIndex
) -> x509.Certificate:
    value_type = reference.get("ValueType")
    if value_type is not None and value_type != X509V3:
        raise InvalidSignatureValue(f"token reference ValueType {value_type} is not X509v3")
    uri = reference.get("URI") or ""
    if not uri.startswith("#") or len(uri) < 2:
        raise InvalidSignatureValue(f"token reference {uri!r} is not a same-document #id")
    token = ids.resolve(uri[1:])
    if token.tag != f"{{{WSSE}}}BinarySecurityToken" or token.getparent() is not security:
        raise InvalidSignatureValue("token reference does not point at a BinarySecurityToken")
    if token.get("ValueType") != X509V3:
        raise InvalidSignatureValue("BinarySecurityToken is not an X.509v3 certificate")
    if token.get("EncodingType") not in (None, BASE64_BINARY):
        raise InvalidSignatureValue("BinarySecurityToken is not base64 encoded")
    der = b64decode_strict(token.text, "BinarySecurityToken")
    return _parse_certificate(der, "BinarySecurityToken")


def _other_tokens(security: etree._Element, signer: x509.Certificate) -> list[x509.Certificate]:
    # Further X.509v3 BinarySecurityTokens in the same header are the signer's intermediate
    # CA certificates: untrusted helpers for path building, trusted only through an anchor.
    others = []
    for token in security.iterchildren(f"{{{WSSE}}}BinarySecurityToken"):
        if token.get("ValueType") != X509V3:
            continue
        cert = _parse_certificate(b64decode_strict(token.text, "BinarySecurityToken"), "token")
        if cert != signer:
            others.append(cert)
    return others


def signer_certificates(
    key_info: etree._Element, security: etree._Element, ids: IdIndex
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The signer certificate named by ``ds:KeyInfo`` and any further (untrusted) ones.

    Accepted: a ``wsse:SecurityTokenReference`` with a ``wsse:Reference`` to a
    BinarySecurityToken in the same Security header, or holding a ``ds:X509Data``; or a
    ``ds:X509Data`` directly. In X509Data the first certificate is the signer's; with a
    token reference, the other X.509v3 BinarySecurityTokens of the header are the others.
    """
    children = _elements(key_info)
    if len(children) != 1:
        raise InvalidSignatureValue("ds:KeyInfo must hold exactly one key reference")
    child = children[0]
    if child.tag == f"{{{WSSE}}}SecurityTokenReference":
        inner = _elements(child)
        if len(inner) != 1:
            raise InvalidSignatureValue("SecurityTokenReference must hold exactly one reference")
        child = inner[0]
        if child.tag == f"{{{WSSE}}}Reference":
            signer = _from_token_reference(child, security, ids)
            return signer, _other_tokens(security, signer)
    if child.tag == f"{{{DS}}}X509Data":
        certs = _from_x509_data(child)
        return certs[0], certs[1:]
    name = etree.QName(child).localname
    raise InvalidSignatureValue(f"key reference <{name}> is not supported")


@dataclass(frozen=True, slots=True)
class SignedTimestamp:
    """``wsu:Created`` and ``wsu:Expires`` of a signed Timestamp, in UTC."""

    created: datetime
    expires: datetime | None


def _datetime(element: etree._Element) -> datetime:
    text = (element.text or "").strip()
    match = _DATETIME.fullmatch(text)
    if match is None:
        name = etree.QName(element).localname
        raise InvalidSignatureValue(f"wsu:{name} {text!r} is not a dateTime with a time zone")
    base, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    try:
        value = datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")
    except ValueError as exc:
        raise InvalidSignatureValue(f"wsu timestamp {text!r} is not a valid date") from exc
    return value.astimezone(UTC)


def _only(elements: Iterable[etree._Element], what: str) -> etree._Element | None:
    found = list(elements)
    if len(found) > 1:
        raise InvalidSignatureValue(f"wsu:Timestamp has more than one {what}")
    return found[0] if found else None


def read_timestamp(timestamp: etree._Element) -> SignedTimestamp:
    """Read Created (required) and Expires (optional) of ``timestamp``."""
    created = _only(timestamp.iterchildren(f"{{{WSU}}}Created"), "Created")
    expires = _only(timestamp.iterchildren(f"{{{WSU}}}Expires"), "Expires")
    if created is None:
        raise InvalidSignatureValue("wsu:Timestamp has no Created")
    return SignedTimestamp(_datetime(created), _datetime(expires) if expires is not None else None)
