"""Metaservice answers go through stage 7 as a provider's answer does: parsed, requestHash set,
signed by the gateway key (strict profile), verified with the development CA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from gateway.meta import answer_soap_metaservice
from gateway.soap import (
    parse_envelope,
    parse_untrusted_xml,
    request_hash,
    set_request_hash,
    split_soap_payload,
)
from security import (
    PkiLayout,
    TrustStore,
    load_certificate,
    load_private_key,
    sign_soap,
    verify_soap_signature,
)

from .conftest import CLIENT, LIMITS, PROVIDER, RegistryMaker, soap_request


@pytest.mark.parametrize(
    ("code", "body"),
    [
        ("listMethods", None),
        ("allowedMethods", None),
        ("getWsdl", b'<xroad:getWsdl xmlns:xroad="http://x-road.eu/xsd/xroad.xsd">'
                    b"<xroad:serviceCode>getPerson</xroad:serviceCode>"
                    b"<xroad:serviceVersion>v1</xroad:serviceVersion></xroad:getWsdl>"),
    ],
)  # fmt: skip
def test_answer_is_signed_like_a_provider_answer(
    make_registry: RegistryMaker, dev_pki: Path, code: str, body: bytes | None
) -> None:
    request = soap_request(CLIENT, PROVIDER, code, None if body is None else etree.fromstring(body))
    request_bytes = etree.tostring(request.root)
    answer = answer_soap_metaservice(
        make_registry(), request, CLIENT, read_document=Path.read_bytes, limits=LIMITS
    )
    # What check_reply does with a ProviderReply(200, answer.content_type, answer.body):
    payload = split_soap_payload(answer.content_type, answer.body)
    envelope = parse_envelope(parse_untrusted_xml(payload.soap, LIMITS), response=True)
    assert envelope.header is not None and request.header is not None
    assert envelope.header.echo_fields() == request.header.echo_fields()
    header = envelope.header_elements["client"].getparent()
    assert header is not None
    set_request_hash(header, request_hash(request_bytes))
    layout = PkiLayout(dev_pki)
    now = datetime.now(UTC)
    signed = sign_soap(
        envelope.root,
        key=load_private_key(layout.gateway_key),
        certificate=load_certificate(layout.gateway_cert),
        profile="strict",
        now=now,
    )
    received = parse_untrusted_xml(etree.tostring(signed), LIMITS)
    verified = verify_soap_signature(
        received,
        policy="strict",
        trust=TrustStore([load_certificate(layout.ca_cert)]),
        now=now,
        max_clock_skew=timedelta(seconds=300),
    )
    assert {"client", "service", "id"} <= verified.signed_header_names
    assert parse_envelope(received, response=True).header.request_hash == request_hash(  # type: ignore[union-attr]
        request_bytes
    )
    assert payload.multipart == (code == "getWsdl")
