"""X-Road SOAP codec: framing, hardened XML, envelope rules, rendering. Pure, no I/O."""

from gateway.soap.envelope import SoapEnvelope, XRoadHeader, parse_envelope
from gateway.soap.mime import ProtocolError, SoapPayload, parse_content_type, split_soap_payload
from gateway.soap.render import render_fault, request_hash, set_request_hash
from gateway.soap.xml import XmlLimits, parse_untrusted_xml

__all__ = [
    "ProtocolError",
    "SoapEnvelope",
    "SoapPayload",
    "XRoadHeader",
    "XmlLimits",
    "parse_content_type",
    "parse_envelope",
    "parse_untrusted_xml",
    "render_fault",
    "request_hash",
    "set_request_hash",
    "split_soap_payload",
]
