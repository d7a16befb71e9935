"""Rendering of obmin's own SOAP messages: faults and the response header. Pure, no I/O."""

from __future__ import annotations

import base64
import hashlib

from lxml import etree

from gateway.errors import Fault, FaultCodeStyle
from gateway.soap.envelope import SOAP_ENV_NS, XROAD_NS

__all__ = [
    "SHA512_URI",
    "render_fault",
    "request_hash",
    "set_request_hash",
]

SHA512_URI = "http://www.w3.org/2001/04/xmlenc#sha512"
_REQUEST_HASH = f"{{{XROAD_NS}}}requestHash"


def request_hash(soap_bytes: bytes) -> str:
    """Base64 SHA-512 of the SOAP part exactly as received (X-Road ``requestHash``)."""
    return base64.b64encode(hashlib.sha512(soap_bytes).digest()).decode("ascii")


def render_fault(fault: Fault, request_id: str, style: FaultCodeStyle = "legacy") -> bytes:
    """A SOAP 1.1 fault whose ``faultDetail`` is the exchange's request id."""
    nsmap = {"SOAP-ENV": SOAP_ENV_NS, "xroad": XROAD_NS}
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")
    fault_el = etree.SubElement(body, f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault_el, "faultcode").text = fault.full_code(style)
    etree.SubElement(fault_el, "faultstring").text = fault.message
    detail = etree.SubElement(fault_el, "detail")
    etree.SubElement(detail, f"{{{XROAD_NS}}}faultDetail").text = request_id
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def set_request_hash(header: etree._Element, value: str) -> etree._Element:
    """Put ``xrd:requestHash`` with ``value`` into ``header``, replacing any the provider sent."""
    for old in header.findall(_REQUEST_HASH):
        header.remove(old)
    element = etree.SubElement(
        header, _REQUEST_HASH, {"algorithmId": SHA512_URI}, nsmap={"xrd": XROAD_NS}
    )
    element.text = value
    return element
