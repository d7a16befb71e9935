"""WSDL documents of SOAP services: found in the registry, parsed as untrusted, anonymised. Pure.

A WSDL handed out to clients must not tell them where the provider really lives: every
endpoint address in it (SOAP 1.1 and 1.2 ``soap:address/@location``, the HTTP binding's
``http:address/@location`` and WSDL 2.0 ``endpoint/@address``) is replaced by X-Road's
placeholder ``http://example.org/xroad-endpoint``, as X-Road's getWsdl does. The document
is parsed with the same hardened parser as messages: a DTD, and with it any entity (XXE,
billion laughs), is refused.

Also the Trembita form ``GET /wsdl?xRoadInstance=..&memberClass=..&memberCode=..
[&subsystemCode=..]&serviceCode=..[&serviceVersion=..]`` (X-Road spells the version
``version``; both are accepted).
"""

from __future__ import annotations

from lxml import etree

from gateway.meta.common import (
    XML_CONTENT_TYPE,
    DocumentReader,
    MetaAnswer,
    MetaError,
    load_document,
    parse_query,
    valid_part,
)
from gateway.soap.mime import ProtocolError
from gateway.soap.xml import XmlLimits, parse_untrusted_xml
from registry import ClientId, Registry, ServiceId

__all__ = [
    "WSDL_ENDPOINT_ADDRESS",
    "anonymise_wsdl",
    "answer_wsdl_query",
    "service_wsdl",
    "wsdl_query_service",
]

WSDL_ENDPOINT_ADDRESS = "http://example.org/xroad-endpoint"

_WSDL11 = "http://schemas.xmlsoap.org/wsdl/"
_WSDL20 = "http://www.w3.org/ns/wsdl"
# (element, attribute) pairs that carry an endpoint address.
_ADDRESSES = (
    (f"{{{_WSDL11}soap/}}address", "location"),
    (f"{{{_WSDL11}soap12/}}address", "location"),
    (f"{{{_WSDL11}http/}}address", "location"),
    (f"{{{_WSDL20}}}endpoint", "address"),
)
_ROOTS = frozenset({f"{{{_WSDL11}}}definitions", f"{{{_WSDL20}}}description"})


def anonymise_wsdl(data: bytes, limits: XmlLimits, *, what: str = "the WSDL") -> bytes:
    """The WSDL with every endpoint address replaced by `WSDL_ENDPOINT_ADDRESS`.

    Raises `MetaError` ``ServiceFailed.InvalidXml`` for a document that is not well-formed,
    declares a DTD, nests too deep or is not a WSDL, ``ServiceFailed.MessageTooLarge`` for one
    above ``limits.max_bytes``.
    """
    try:
        root = parse_untrusted_xml(data, limits, what=what)
    except ProtocolError as exc:
        code = (
            "ServiceFailed.MessageTooLarge"
            if exc.code == "MessageTooLarge"
            else "ServiceFailed.InvalidXml"
        )
        raise MetaError(str(exc), code=code) from exc
    if root.tag not in _ROOTS:
        raise MetaError(
            f"{what} is not a WSDL document (root element {root.tag})",
            code="ServiceFailed.InvalidXml",
        )
    for tag, attribute in _ADDRESSES:
        for element in root.iter(tag):
            element.set(attribute, WSDL_ENDPOINT_ADDRESS)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def service_wsdl(
    registry: Registry, service: ServiceId, *, read_document: DocumentReader, limits: XmlLimits
) -> bytes:
    """The anonymised WSDL of a registered SOAP service (exact identifier, version included).

    ``UnknownService`` when the service is not registered or has no WSDL, ``ServiceType`` when
    it is a REST service.
    """
    entry = registry.find_service(service)
    if entry is None:
        raise MetaError(f"service {service} is not registered", code="UnknownService")
    if entry.type != "soap":
        raise MetaError(
            f"service {service} is a {entry.type} service and has no WSDL", code="ServiceType"
        )
    if entry.wsdl_path is None:
        raise MetaError(f"no WSDL is registered for service {service}", code="UnknownService")
    what = f"the WSDL of service {service}"
    return anonymise_wsdl(load_document(read_document, entry.wsdl_path, what), limits, what=what)


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise MetaError(f"query parameter {name} is required", code="InvalidRequest")
    return valid_part(value, name)


def wsdl_query_service(query: str) -> ServiceId:
    """The service a Trembita ``GET /wsdl?...`` query names, every part checked."""
    params = parse_query(query)
    instance = _required(params, "xRoadInstance")
    member_class = _required(params, "memberClass")
    member_code = _required(params, "memberCode")
    code = _required(params, "serviceCode")
    subsystem = params.get("subsystemCode")
    version = params.get("serviceVersion")
    alias = params.get("version")
    if version is not None and alias is not None and version != alias:
        raise MetaError(
            "query parameters serviceVersion and version disagree", code="InvalidRequest"
        )
    version = version if version is not None else alias
    provider = ClientId(
        instance,
        member_class,
        member_code,
        None if subsystem is None else valid_part(subsystem, "subsystemCode"),
    )
    return ServiceId(
        provider, code, None if version is None else valid_part(version, "serviceVersion")
    )


def answer_wsdl_query(
    registry: Registry,
    query: str,
    *,
    read_document: DocumentReader,
    limits: XmlLimits,
) -> MetaAnswer:
    """Answer Trembita's ``GET /wsdl?...``: the service's WSDL, addresses replaced, as text/xml.

    ``query`` is the raw query string (still percent-encoded). Missing or repeated parameters
    give ``InvalidRequest``, malformed identifier parts ``InvalidServiceIdentifier``; then as
    `service_wsdl`.
    """
    service = wsdl_query_service(query)
    body = service_wsdl(registry, service, read_document=read_document, limits=limits)
    return MetaAnswer(XML_CONTENT_TYPE, body)
