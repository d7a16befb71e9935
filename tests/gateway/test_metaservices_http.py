"""Metaservices over HTTP: authenticated, audited, answered by the gateway and signed."""

from __future__ import annotations

from lxml import etree

from adapters.client import build_soap_request
from gateway.audit import open_audit_store
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert
from tests.gateway.test_signed_exchange import Deployment, _sdk

XRD = "http://x-road.eu/xsd/xroad.xsd"
PROVIDER = ClientId.parse("SEVDEIR-TEST/GOV/87654321/REGISTRY")
CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
NOACCESS = ClientId("SEVDEIR-TEST", "GOV", "12345678", "NOACCESS")


def _meta_body(name: str) -> etree._Element:
    return etree.Element(f"{{{XRD}}}{name}", nsmap={"xrd": XRD})


def _codes(answer_envelope: etree._Element) -> list[str]:
    return [
        e.text or "" for e in answer_envelope.iter("{http://x-road.eu/xsd/identifiers}serviceCode")
    ]


async def test_list_and_allowed_methods_are_signed_and_audited(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    for client, name, expected in [
        (CLIENT, "listMethods", ["getPerson"]),
        (CLIENT, "allowedMethods", ["getPerson"]),
        (NOACCESS, "allowedMethods", []),
    ]:
        service = ServiceId(PROVIDER, name)
        request = sdk.sign(
            build_soap_request(
                client, service, _meta_body(name), message_id=f"meta-{client.subsystem}-{name}"
            )
        )
        answer = await sdk.send(request)  # verifies the gateway's signature and requestHash
        assert not answer.is_fault, answer.raw[:500]
        assert _codes(answer.envelope.body_child) == expected

    store = await open_audit_store(deployment.settings.audit)
    try:
        records = await store.query(message_id="meta-CLIENT-listMethods")
    finally:
        await store.close()
    assert [r.direction for r in records] == ["request", "response"]
    assert records[0].service == "SEVDEIR-TEST/GOV/87654321/REGISTRY/listMethods"


async def test_get_wsdl_is_multipart_with_the_address_hidden(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    body = _meta_body("getWsdl")
    etree.SubElement(body, f"{{{XRD}}}serviceCode").text = "getPerson"
    etree.SubElement(body, f"{{{XRD}}}serviceVersion").text = "v1"
    request = sdk.sign(build_soap_request(CLIENT, ServiceId(PROVIDER, "getWsdl"), body))
    response = await deployment.client.post(
        "/", data=request, headers={"Content-Type": "text/xml; charset=utf-8"}
    )
    assert response.headers["Content-Type"].startswith("multipart/related")
    raw = await response.read()
    assert b"http://example.org/xroad-endpoint" in raw
    assert b"127.0.0.1:8090" not in raw
    assert b"faultcode" not in raw


async def test_unsigned_metaservice_call_is_refused(deployment: Deployment) -> None:
    request = etree.tostring(
        build_soap_request(CLIENT, ServiceId(PROVIDER, "listMethods"), _meta_body("listMethods"))
    )
    response = await deployment.client.post("/", data=request, headers={"Content-Type": "text/xml"})
    root = etree.fromstring(await response.read())
    assert root.findtext(".//faultcode") == "Client.MissingSignature"
