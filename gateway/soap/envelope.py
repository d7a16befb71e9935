"""X-Road message protocol 4.0 envelopes: parse and check. Pure, no I/O.

The same rules apply to a client's request and a provider's response; `parse_envelope` is
told which one it reads so that a broken response is reported as the provider's fault
(``ServiceFailed.*``) rather than the client's.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.soap.mime import ProtocolError
from registry.errors import InvalidIdentifier
from registry.identifiers import ClientId, ServiceId

__all__ = [
    "ID_NS",
    "REPR_NS",
    "SOAP_ENV_NS",
    "XROAD_NS",
    "SoapEnvelope",
    "XRoadHeader",
    "parse_envelope",
]

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS = "http://x-road.eu/xsd/xroad.xsd"
ID_NS = "http://x-road.eu/xsd/identifiers"
REPR_NS = "http://x-road.eu/xsd/representation.xsd"

_ENVELOPE = f"{{{SOAP_ENV_NS}}}Envelope"
_HEADER = f"{{{SOAP_ENV_NS}}}Header"
_BODY = f"{{{SOAP_ENV_NS}}}Body"
_FAULT = f"{{{SOAP_ENV_NS}}}Fault"
_OBJECT_TYPE = f"{{{ID_NS}}}objectType"

# X-Road header fields this gateway understands, by qualified name.
_FIELDS = {
    f"{{{XROAD_NS}}}{name}": name
    for name in (
        "client",
        "service",
        "id",
        "protocolVersion",
        "userId",
        "issue",
        "requestHash",
        "securityServer",
    )
}
_FIELDS[f"{{{REPR_NS}}}representedParty"] = "representedParty"
_REQUIRED = ("client", "service", "id", "protocolVersion")


@dataclass(frozen=True, slots=True)
class XRoadHeader:
    """The X-Road header fields of a message, parsed into values."""

    client: ClientId
    service: ServiceId
    id: str
    protocol_version: str
    user_id: str | None = None
    issue: str | None = None
    represented_party: str | None = None
    request_hash: str | None = None
    security_server: str | None = None

    def echo_fields(self) -> tuple[object, ...]:
        """The fields a response must echo unchanged (SPEC 3.1)."""
        return (
            self.client,
            self.service,
            self.id,
            self.user_id,
            self.issue,
            self.represented_party,
        )


@dataclass(frozen=True, slots=True)
class SoapEnvelope:
    """A parsed SOAP envelope: the tree, its X-Road header and its single body element.

    ``header`` is ``None`` only for a SOAP fault, which may come without X-Road headers.
    ``header_elements`` maps each X-Road field name to the element it was read from, so a
    signature verifier can check that exactly these elements were signed.
    """

    root: etree._Element
    body: etree._Element
    body_child: etree._Element
    header: XRoadHeader | None
    header_elements: dict[str, etree._Element]

    @property
    def is_fault(self) -> bool:
        """True when the body is a SOAP fault."""
        return self.body_child.tag == _FAULT


def _fail(code: str, message: str, response: bool) -> ProtocolError:
    return ProtocolError(message, code=f"ServiceFailed.{code}" if response else code)


def _is_element(node: etree._Element) -> bool:
    # Comments, processing instructions and entity references are nodes too in lxml.
    return not isinstance(node, etree._Comment | etree._ProcessingInstruction | etree._Entity)


def _raw_text(element: etree._Element) -> str:
    # itertext() skips comments and processing instructions: a comment spliced into a signed
    # value (exclusive C14N drops comments) must not cut the value we read.
    return "".join(str(t) for t in element.itertext())


def _text(element: etree._Element) -> str:
    """A free-text header field (id, userId, issue, protocolVersion): surrounding
    whitespace is layout, not content."""
    return _raw_text(element).strip()


def _id_part(element: etree._Element, name: str, *, required: bool, response: bool) -> str | None:
    found = element.findall(f"{{{ID_NS}}}{name}")
    if not found:
        if required:
            raise _fail("InvalidXml", f"identifier has no {name}", response)
        return None
    if len(found) > 1:
        raise _fail("InvalidXml", f"identifier has more than one {name}", response)
    # SPEC 2: an identifier part is exactly its characters. Nothing is trimmed: surrounding
    # whitespace, NBSP, NEL or zero-width characters make it invalid (InvalidClientIdentifier
    # or InvalidServiceIdentifier), so that "consumer&#xA0;" can never pass as "consumer".
    # X-Road's proxy test vectors never indent inside identifier elements.
    return _raw_text(found[0])


def _client_id(element: etree._Element, response: bool) -> ClientId:
    object_type = element.get(_OBJECT_TYPE)
    if object_type not in ("MEMBER", "SUBSYSTEM"):
        raise _fail(
            "InvalidXml", "client identifier must have objectType MEMBER or SUBSYSTEM", response
        )
    parts = [
        _id_part(element, n, required=True, response=response)
        for n in ("xRoadInstance", "memberClass", "memberCode")
    ]
    subsystem = _id_part(
        element, "subsystemCode", required=object_type == "SUBSYSTEM", response=response
    )
    if object_type == "MEMBER" and subsystem is not None:
        raise _fail("InvalidXml", "a MEMBER identifier cannot have a subsystemCode", response)
    try:
        return ClientId(str(parts[0]), str(parts[1]), str(parts[2]), subsystem)
    except InvalidIdentifier as exc:
        # In a provider's answer it is the provider's fault, not the client's.
        raise _fail("InvalidClientIdentifier", f"client identifier: {exc}", response) from exc


def _service_id(element: etree._Element, response: bool) -> ServiceId:
    if element.get(_OBJECT_TYPE) != "SERVICE":
        raise _fail("InvalidXml", "service identifier must have objectType SERVICE", response)
    parts = [
        _id_part(element, n, required=True, response=response)
        for n in ("xRoadInstance", "memberClass", "memberCode")
    ]
    subsystem = _id_part(element, "subsystemCode", required=False, response=response)
    code = _id_part(element, "serviceCode", required=True, response=response)
    version = _id_part(element, "serviceVersion", required=False, response=response)
    try:
        provider = ClientId(str(parts[0]), str(parts[1]), str(parts[2]), subsystem)
        return ServiceId(provider, str(code), version or None)
    except InvalidIdentifier as exc:
        raise _fail("InvalidServiceIdentifier", f"service identifier: {exc}", response) from exc


def _represented_party(element: etree._Element) -> str:
    party_class = element.findtext(f"{{{REPR_NS}}}partyClass")
    party_code = element.findtext(f"{{{REPR_NS}}}partyCode") or ""
    return f"{party_class.strip()}/{party_code.strip()}" if party_class else party_code.strip()


def _header(
    header_el: etree._Element, response: bool
) -> tuple[XRoadHeader, dict[str, etree._Element]]:
    elements: dict[str, etree._Element] = {}
    for child in header_el:
        if not _is_element(child):
            continue
        name = _FIELDS.get(child.tag)
        if name is None:
            continue  # other headers (wsse:Security, extensions) are not ours to judge
        if name in elements:
            raise _fail(
                "DuplicateHeaderField", f"header field {name} appears more than once", response
            )
        elements[name] = child
    for name in _REQUIRED:
        if name not in elements:
            raise _fail("MissingHeaderField", f"required header field {name} is missing", response)
    version = _text(elements["protocolVersion"])
    if not version.startswith("4."):
        raise _fail(
            "InvalidProtocolVersion",
            f"protocol version {version!r} is not supported (4.x expected)",
            response,
        )
    # An empty id is schema-valid (xs:string) and upstream X-Road accepts it; the replay
    # cache then lets only one such message per client through in the freshness window.
    message_id = _text(elements["id"])

    def optional(name: str) -> str | None:
        element = elements.get(name)
        return None if element is None else _text(element)

    header = XRoadHeader(
        client=_client_id(elements["client"], response),
        service=_service_id(elements["service"], response),
        id=message_id,
        protocol_version=version,
        user_id=optional("userId"),
        issue=optional("issue"),
        represented_party=(
            _represented_party(elements["representedParty"])
            if "representedParty" in elements
            else None
        ),
        request_hash=optional("requestHash"),
        security_server=optional("securityServer"),
    )
    return header, elements


def parse_envelope(root: etree._Element, *, response: bool = False) -> SoapEnvelope:
    """Check an X-Road SOAP envelope and read its header and body.

    Raises `ProtocolError` whose code names the first rule broken (``MissingHeader``,
    ``DuplicateHeaderField``, ``InvalidBody`` ...; prefixed ``ServiceFailed.`` for responses).
    """
    if root.tag != _ENVELOPE:
        raise _fail("InvalidSoap", "the document is not a SOAP 1.1 envelope", response)
    elements = [child for child in root if _is_element(child)]
    header_el = next((c for c in elements if c.tag == _HEADER), None)
    body_el = next((c for c in elements if c.tag == _BODY), None)
    if sum(1 for c in elements if c.tag in (_HEADER, _BODY)) != len(elements) or (
        len([c for c in elements if c.tag == _BODY]) > 1
        or len([c for c in elements if c.tag == _HEADER]) > 1
    ):
        raise _fail("InvalidSoap", "the envelope may hold only one Header and one Body", response)
    if body_el is None:
        raise _fail("MissingBody", "the envelope has no Body", response)
    if header_el is not None and elements.index(header_el) > elements.index(body_el):
        raise _fail("InvalidSoap", "the Header must come before the Body", response)
    body_children = [c for c in body_el if _is_element(c)]
    if len(body_children) != 1:
        raise _fail(
            "InvalidBody",
            f"the Body must hold exactly one element, it holds {len(body_children)}",
            response,
        )
    body_child = body_children[0]
    if body_child.tag == _FAULT:
        header = header_elements = None
        if header_el is not None and any(t in _FIELDS for t in (c.tag for c in header_el)):
            header, header_elements = _header(header_el, response)
        return SoapEnvelope(root, body_el, body_child, header, header_elements or {})
    if header_el is None:
        raise _fail("MissingHeader", "the envelope has no Header", response)
    header, header_elements = _header(header_el, response)
    local_name = etree.QName(body_child).localname
    if not local_name.startswith(header.service.service_code):
        raise _fail(
            "InconsistentHeaders",
            f"body element {local_name!r} does not match service "
            f"code {header.service.service_code!r}",
            response,
        )
    return SoapEnvelope(root, body_el, body_child, header, header_elements)
