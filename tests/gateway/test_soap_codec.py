"""The SOAP codec on its own: framing, hardened XML, envelope rules, faults."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import Fault, Side, fault_for, modern_code
from gateway.soap import (
    ProtocolError,
    XmlLimits,
    parse_content_type,
    parse_envelope,
    parse_untrusted_xml,
    render_fault,
    split_soap_payload,
)

LIMITS = XmlLimits(max_bytes=64 * 1024, max_depth=32)

ENVELOPE = b"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:x="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">
  <s:Header>
    <x:client id:objectType="SUBSYSTEM"><id:xRoadInstance>SEVDEIR-TEST</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass><id:memberCode>12345678</id:memberCode>
      <id:subsystemCode>CLIENT</id:subsystemCode></x:client>
    <x:service id:objectType="SERVICE"><id:xRoadInstance>SEVDEIR-TEST</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass><id:memberCode>87654321</id:memberCode>
      <id:subsystemCode>REGISTRY</id:subsystemCode><id:serviceCode>getPerson</id:serviceCode>
      <id:serviceVersion>v1</id:serviceVersion></x:service>
    <x:id>msg-1</x:id>
    <x:protocolVersion>4.0</x:protocolVersion>
  </s:Header>
  <s:Body><p:getPerson xmlns:p="urn:p"/></s:Body>
</s:Envelope>"""


def _code(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value.code


def test_envelope_parses_into_values() -> None:
    envelope = parse_envelope(parse_untrusted_xml(ENVELOPE, LIMITS))
    assert envelope.header is not None
    assert str(envelope.header.client) == "SEVDEIR-TEST/GOV/12345678/CLIENT"
    assert str(envelope.header.service) == "SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1"
    assert envelope.header.id == "msg-1"
    assert etree.QName(envelope.body_child).localname == "getPerson"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d.replace(b"<x:id>msg-1</x:id>", b""), "MissingHeaderField"),
        (
            lambda d: d.replace(b"<x:id>msg-1</x:id>", b"<x:id>a</x:id><x:id>b</x:id>"),
            "DuplicateHeaderField",
        ),
        (lambda d: d.replace(b">4.0<", b">3.1<"), "InvalidProtocolVersion"),
        (lambda d: d.replace(b'<p:getPerson xmlns:p="urn:p"/>', b""), "InvalidBody"),
        (lambda d: d.replace(b"getPerson xmlns", b"other xmlns"), "InconsistentHeaders"),
        (lambda d: d.replace(b'x:service id:objectType="SERVICE"', b"x:service"), "InvalidXml"),
        (
            lambda d: d.replace(b"<id:memberCode>12345678", b"<id:memberCode>12 34"),
            "InvalidClientIdentifier",
        ),
        (
            lambda d: d.replace(b"<id:memberCode>12345678", b"<id:memberCode>1%2F2"),
            "InvalidClientIdentifier",
        ),
        (
            lambda d: d.replace(b"<s:Body>", b'<s:Body><p:getPerson xmlns:p="urn:p"/>'),
            "InvalidBody",
        ),
    ],
)
def test_header_and_body_rules(mutate: object, code: str) -> None:
    data = mutate(ENVELOPE)  # type: ignore[operator]
    assert _code(lambda: parse_envelope(parse_untrusted_xml(data, LIMITS))) == code


def test_response_side_codes_are_service_failed() -> None:
    data = ENVELOPE.replace(b"<x:id>msg-1</x:id>", b"")
    root = parse_untrusted_xml(data, LIMITS)
    assert _code(parse_envelope, root, response=True) == "ServiceFailed.MissingHeaderField"


def test_missing_header_and_body() -> None:
    no_header = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><a/></s:Body></s:Envelope>'
    assert _code(lambda: parse_envelope(parse_untrusted_xml(no_header, LIMITS))) == "MissingHeader"
    no_body = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/></s:Envelope>'
    )
    assert _code(lambda: parse_envelope(parse_untrusted_xml(no_body, LIMITS))) == "MissingBody"
    assert _code(lambda: parse_envelope(parse_untrusted_xml(b"<a/>", LIMITS))) == "InvalidSoap"


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;">]><a>&b;</a>',
        b'<?xml version="1.0"?><!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>',
        b"<a><b></a>",
    ],
    ids=["xxe", "entity-expansion", "external-dtd", "malformed"],
)
def test_hostile_xml_is_refused(document: bytes) -> None:
    assert _code(parse_untrusted_xml, document, LIMITS) == "InvalidXml"


def test_limits() -> None:
    deep = b"<a>" * 40 + b"</a>" * 40
    assert _code(parse_untrusted_xml, deep, LIMITS) == "InvalidXml"
    assert (
        _code(parse_untrusted_xml, b"<a/>" + b" " * LIMITS.max_bytes, LIMITS) == "MessageTooLarge"
    )
    assert _code(parse_untrusted_xml, b"  ", LIMITS) == "InvalidSoap"


def test_multipart_framing_crlf_and_lf() -> None:
    for eol in (b"\r\n", b"\n"):
        body = eol.join(
            [
                b"--B",
                b"Content-Type: text/xml",
                b"",
                ENVELOPE,
                b"--B",
                b"Content-Type: text/plain",
                b"",
                b"attached",
                b"--B--",
                b"",
            ]
        )
        payload = split_soap_payload("multipart/related; boundary=B", body)
        assert payload.soap == ENVELOPE
        assert payload.multipart
        assert payload.attachments[0].content == b"attached"


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("blah", b"<a/>", "InvalidContentType"),
        ("application/json", b"{}", "InvalidContentType"),
        ("multipart/related", b"--B\n\n", "InvalidContentType"),
        ("multipart/related; boundary=B", b"", "MissingSoap"),
        (
            "multipart/related; boundary=B",
            b"--B\nContent-Type: text/plain\n\nx\n--B--\n",
            "InvalidContentType",
        ),
        (
            "multipart/related; boundary=B",
            b"--B\nContent-Type: text/xml\n\n<a/>\n--B\n\nx\n--B--\n",
            "InvalidContentType",
        ),
        (
            "multipart/related; boundary=B",
            b"--B\nContent-Type: text/xml\n\n<a/>\n",
            "InvalidMessage",
        ),
    ],
)
def test_framing_errors(content_type: str, body: bytes, code: str) -> None:
    assert _code(split_soap_payload, content_type, body) == code


def test_content_type_parameters() -> None:
    ctype = parse_content_type('multipart/related; type="application/xop+xml"; boundary="a b"')
    assert ctype is not None
    assert ctype.media_type == "multipart/related"
    assert ctype.params == {"type": "application/xop+xml", "boundary": "a b"}
    assert parse_content_type("text/xml; charset=UTF-8") is not None
    assert parse_content_type("nonsense") is None


@given(st.text(max_size=80))
def test_content_type_parser_never_raises(value: str) -> None:
    parse_content_type(value)


@given(st.binary(max_size=400))
def test_untrusted_xml_raises_only_coded_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_envelope(parse_untrusted_xml(data, LIMITS))


def test_fault_rendering_and_modern_codes() -> None:
    fault = Fault(Side.SERVER_PROXY, "ServiceFailed.NetworkError", "provider unreachable", 502)
    assert fault.full_code() == "Server.ServerProxy.ServiceFailed.NetworkError"
    assert fault.full_code("modern") == "server.serverproxy.service_failed.network_error"
    assert modern_code("Client.InvalidSignatureValue") == "client.invalid_signature_value"
    root = etree.fromstring(render_fault(fault, "req-1"))
    assert root.findtext(".//faultcode") == "Server.ServerProxy.ServiceFailed.NetworkError"
    assert root.findtext(".//{http://x-road.eu/xsd/xroad.xsd}faultDetail") == "req-1"


def test_unknown_exceptions_leak_nothing() -> None:
    fault = fault_for(ValueError("secret path /etc/obmin/key.pem"))
    assert fault.full_code() == "Server.ClientProxy.InternalError"
    assert "secret" not in fault.message
