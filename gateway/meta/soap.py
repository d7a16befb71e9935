"""X-Road SOAP metaservices (service metadata protocol): listMethods, allowedMethods, getWsdl.

Pure: a checked request envelope and the registry snapshot in, the unsigned answer out. The
answer is an ordinary X-Road response: the request's X-Road header fields echoed in their
order, then the body. The pipeline treats it exactly as a provider's answer (stage 7 checks
the echo, adds ``requestHash`` and signs), so metaservices get no signing path of their own.

- ``listMethods``: every SOAP service of the provider named in the ``service`` header, one
  ``xroad:service`` identifier each (all versions), as X-Road lists only WSDL services here.
- ``allowedMethods``: the same, limited to the services `Registry.is_allowed` lets this client
  call (default deny, per service code as everywhere).
- ``getWsdl``: body ``xroad:getWsdl`` naming ``serviceCode`` and optional ``serviceVersion``
  of the same provider. The answer is ``multipart/related``: the SOAP part
  (``xroad:getWsdlResponse`` repeating the two values), then the WSDL with its endpoint
  addresses replaced (see `gateway.meta.wsdl`).

As in X-Road, access rights are not checked for the metaservices themselves (allowedMethods
filters its own answer); they are authenticated and audited like any other call.
"""

from __future__ import annotations

import copy
import hashlib

from lxml import etree

from gateway.meta.common import (
    XML_CONTENT_TYPE,
    DocumentReader,
    MetaAnswer,
    MetaError,
    append_identifier,
    registered_provider,
    valid_part,
)
from gateway.meta.wsdl import service_wsdl
from gateway.soap.envelope import ID_NS, SOAP_ENV_NS, XROAD_NS, SoapEnvelope, XRoadHeader
from gateway.soap.xml import XmlLimits
from registry import ClientId, Registry, ServiceEntry, ServiceId

__all__ = ["SOAP_METASERVICES", "answer_soap_metaservice", "is_metaservice"]

SOAP_METASERVICES = frozenset({"listMethods", "allowedMethods", "getWsdl"})

_NSMAP = {"SOAP-ENV": SOAP_ENV_NS, "xroad": XROAD_NS, "id": ID_NS}
_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_REFERENCE_IDS = frozenset({f"{{{_WSU}}}Id", "Id", "{http://www.w3.org/XML/1998/namespace}id"})


def is_metaservice(service_code: str) -> bool:
    """True for the service codes obmin answers itself on the SOAP port."""
    return service_code in SOAP_METASERVICES


def _echo_envelope(request: SoapEnvelope, body_child: etree._Element) -> etree._Element:
    """A response envelope echoing the request's X-Road header fields, in their order.

    Only X-Road fields are copied, without the ids the client's signature referenced them
    by: the client's ``wsse:Security`` and ``requestHash`` are not ours to send back (the
    pipeline adds its own requestHash and signature).
    """
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap=_NSMAP)
    header = etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Header")
    for name, element in request.header_elements.items():
        if name == "requestHash":
            continue
        echoed = copy.deepcopy(element)
        echoed.tail = None
        for attribute in [a for a in echoed.attrib if a in _REFERENCE_IDS]:
            del echoed.attrib[attribute]  # the client's signature references, not ours
        header.append(echoed)
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body").append(body_child)
    return envelope


def _method_list(name: str, services: list[ServiceEntry]) -> etree._Element:
    response = etree.Element(f"{{{XROAD_NS}}}{name}", nsmap=_NSMAP)
    for entry in services:
        append_identifier(response, "service", entry.id)
    return response


def _soap_services(registry: Registry, provider: ClientId) -> list[ServiceEntry]:
    return [entry for entry in registry.services_of(provider) if entry.type == "soap"]


def _single_text(parent: etree._Element, name: str) -> str | None:
    found = [
        child
        for child in parent
        if isinstance(child.tag, str) and child.tag in (f"{{{XROAD_NS}}}{name}", name)
    ]
    if not found:
        return None
    if len(found) > 1:
        raise MetaError(f"getWsdl names {name} more than once", code="InvalidRequest")
    value = "".join(str(text) for text in found[0].itertext()).strip()
    return value or None


def _wsdl_request(request: SoapEnvelope, provider: ClientId) -> ServiceId:
    body = request.body_child
    if etree.QName(body).localname != "getWsdl":
        raise MetaError("the getWsdl body element must be xroad:getWsdl", code="InvalidRequest")
    code = _single_text(body, "serviceCode")
    if code is None:
        raise MetaError("getWsdl names no serviceCode", code="InvalidRequest")
    version = _single_text(body, "serviceVersion")
    return ServiceId(
        provider,
        valid_part(code, "serviceCode"),
        None if version is None else valid_part(version, "serviceVersion"),
    )


def _wsdl_response(service: ServiceId) -> etree._Element:
    response = etree.Element(f"{{{XROAD_NS}}}getWsdlResponse", nsmap=_NSMAP)
    etree.SubElement(response, f"{{{XROAD_NS}}}serviceCode").text = service.service_code
    if service.service_version is not None:
        etree.SubElement(response, f"{{{XROAD_NS}}}serviceVersion").text = service.service_version
    return response


def _multipart(soap: bytes, wsdl: bytes) -> MetaAnswer:
    """SOAP part, then the WSDL as an attachment, framed as X-Road's getWsdl frames them.

    Boundary and Content-ID are derived from the content, so the answer is a function of its
    inputs; the boundary is checked not to occur in either part.
    """
    digest = hashlib.sha256(soap + b"\0" + wsdl).hexdigest()
    boundary = f"xroad-meta-{digest[:32]}"
    salt = 0
    while boundary.encode("ascii") in soap or boundary.encode("ascii") in wsdl:
        salt += 1
        boundary = f"xroad-meta-{digest[:32]}-{salt}"
    content_id = f"<wsdl={digest[32:]}@x-road.eu>"
    delimiter = f"--{boundary}\r\n".encode("ascii")
    body = b"".join(
        [
            delimiter,
            f"Content-Type: {XML_CONTENT_TYPE}\r\n\r\n".encode("ascii"),
            soap,
            b"\r\n",
            delimiter,
            f"Content-Type: {XML_CONTENT_TYPE}\r\n".encode("ascii"),
            b"Content-Transfer-Encoding: binary\r\n",
            f"Content-ID: {content_id}\r\n\r\n".encode("ascii"),
            wsdl,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )
    content_type = f'multipart/related; type="text/xml"; charset=UTF-8; boundary="{boundary}"'
    return MetaAnswer(content_type, body)


def _checked_header(request: SoapEnvelope, client: ClientId) -> XRoadHeader:
    header = request.header
    if header is None:
        raise MetaError("a SOAP fault is not a metaservice request", code="InvalidSoap")
    if header.client != client:
        # The pipeline passes the client it authenticated from this very header.
        raise MetaError(
            f"authenticated client {client} is not the header's {header.client}",
            code="InternalError",
        )
    if not is_metaservice(header.service.service_code):
        raise MetaError(f"{header.service.service_code} is not a metaservice", code="InternalError")
    return header


def answer_soap_metaservice(
    registry: Registry,
    request: SoapEnvelope,
    client: ClientId,
    *,
    read_document: DocumentReader,
    limits: XmlLimits,
) -> MetaAnswer:
    """Answer a SOAP metaservice request from the registry; the answer is not yet signed.

    ``request`` is the parsed, authenticated request and ``client`` the client authenticated
    for it. Returns ``text/xml`` for listMethods and allowedMethods, ``multipart/related`` for
    getWsdl. Raises `MetaError`: ``UnknownService`` for an unregistered provider or service,
    ``InvalidRequest`` for a getWsdl body without serviceCode, ``ServiceType`` for a REST
    service, ``ServiceFailed.InvalidXml`` for a registered WSDL with a DTD or not well-formed.
    """
    header = _checked_header(request, client)
    code = header.service.service_code
    provider = header.service.provider
    registered_provider(registry, provider)
    if code == "listMethods":
        body = _method_list("listMethodsResponse", _soap_services(registry, provider))
    elif code == "allowedMethods":
        allowed = [
            entry
            for entry in _soap_services(registry, provider)
            if registry.is_allowed(client, entry.id)
        ]
        body = _method_list("allowedMethodsResponse", allowed)
    else:
        service = _wsdl_request(request, provider)
        wsdl = service_wsdl(registry, service, read_document=read_document, limits=limits)
        envelope = _echo_envelope(request, _wsdl_response(service))
        soap = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
        return _multipart(soap, wsdl)
    envelope = _echo_envelope(request, body)
    return MetaAnswer(
        XML_CONTENT_TYPE, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    )
