"""The example provider IS of the example deployment: a State Registry answering ``getPerson``.

A real small SOAP service (not a mock): it parses the X-Road request with the same hardened
codec as the gateway, echoes the X-Road headers as the protocol requires and answers from a
small in-memory register. `make run` starts it on port 8090.
"""

from __future__ import annotations

import copy

from aiohttp import web
from lxml import etree

from gateway.soap.envelope import SOAP_ENV_NS, parse_envelope
from gateway.soap.mime import ProtocolError
from gateway.soap.xml import XmlLimits, parse_untrusted_xml

__all__ = ["PEOPLE", "create_provider_app"]

# Fictitious people, keyed by RNOKPP (the Ukrainian taxpayer number shape).
PEOPLE: dict[str, dict[str, str]] = {
    "1234567890": {"givenName": "Olena", "familyName": "Kovalenko", "birthDate": "1984-03-12"},
    "2345678901": {"givenName": "Taras", "familyName": "Shevchuk", "birthDate": "1990-11-02"},
}

_LIMITS = XmlLimits(max_bytes=1024 * 1024, max_depth=32)


def _fault(code: str, message: str) -> web.Response:
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV_NS})
    fault = etree.SubElement(
        etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body"), f"{{{SOAP_ENV_NS}}}Fault"
    )
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return web.Response(
        body=etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"),
        content_type="text/xml",
        charset="utf-8",
        status=500,
    )


async def _soap(request: web.Request) -> web.Response:
    try:
        root = parse_untrusted_xml(await request.read(), _LIMITS)
        envelope = parse_envelope(root)
    except ProtocolError as exc:
        return _fault("SOAP-ENV:Client", str(exc))
    assert envelope.header is not None  # not a fault: parse_envelope guarantees a header
    operation = etree.QName(envelope.body_child).localname
    if operation != "getPerson":
        return _fault("SOAP-ENV:Client", f"unknown operation {operation}")
    namespace = etree.QName(envelope.body_child).namespace
    code = (
        envelope.body_child.findtext(f"{{{namespace}}}rnokpp" if namespace else "rnokpp") or ""
    ).strip()
    person = PEOPLE.get(code)
    if person is None:
        return _fault("SOAP-ENV:Client", f"no person with RNOKPP {code!r}")

    response = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV_NS})
    header = etree.SubElement(response, f"{{{SOAP_ENV_NS}}}Header")
    for element in envelope.header_elements.values():  # echo every X-Road header field
        header.append(copy.deepcopy(element))
    body = etree.SubElement(response, f"{{{SOAP_ENV_NS}}}Body")
    qualify = (lambda n: f"{{{namespace}}}{n}") if namespace else (lambda n: n)
    answer = etree.SubElement(body, qualify("getPersonResponse"))
    etree.SubElement(answer, qualify("rnokpp")).text = code
    for key, value in person.items():
        etree.SubElement(answer, qualify(key)).text = value
    return web.Response(
        body=etree.tostring(response, xml_declaration=True, encoding="UTF-8"),
        content_type="text/xml",
        charset="utf-8",
    )


def create_provider_app() -> web.Application:
    """The example provider as an aiohttp application (SOAP endpoint at ``POST /soap``)."""
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/soap", _soap)
    return app
