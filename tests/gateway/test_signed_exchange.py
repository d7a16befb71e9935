"""A signed SOAP exchange end to end: client SDK and zeep -> obmin -> example provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlsec
from lxml import etree
from zeep import Client as ZeepClient
from zeep.wsse.signature import BinarySignature

from adapters.client import XRoadSoapClient, build_soap_request
from adapters.demo import DEMO_NS
from gateway.audit import open_audit_store
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert, TrustStore, load_certificate, load_private_key
from tests.gateway.conftest import Deployment

WSDL = Path(__file__).resolve().parents[2] / "config" / "example" / "registry" / "wsdl"
SERVICE = ServiceId(ClientId.parse("SEVDEIR-TEST/GOV/87654321/REGISTRY"), "getPerson", "v1")
CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
XRD = "{http://x-road.eu/xsd/xroad.xsd}"


def _body(code: str = "1234567890") -> etree._Element:
    body = etree.Element(f"{{{DEMO_NS}}}getPerson", nsmap={"p": DEMO_NS})
    etree.SubElement(body, f"{{{DEMO_NS}}}rnokpp").text = code
    return body


def _sdk(deployment: Deployment, cert: IssuedCert) -> XRoadSoapClient:
    return XRoadSoapClient(
        str(deployment.client.make_url("/")),
        key=load_private_key(cert.key_path),
        certificate=load_certificate(cert.cert_path),
        gateway_trust=TrustStore([load_certificate(deployment.pki / "ca" / "ca.crt")]),
        session=deployment.client.session,
    )


async def _post(deployment: Deployment, data: bytes) -> etree._Element:
    response = await deployment.client.post(
        "/", data=data, headers={"Content-Type": "text/xml; charset=utf-8"}
    )
    assert response.status == 200
    return etree.fromstring(await response.read())


def _fault(root: etree._Element) -> str | None:
    return root.findtext(".//faultcode")


async def test_strict_signed_exchange_is_answered_signed_and_audited(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    request = sdk.sign(
        build_soap_request(CLIENT, SERVICE, _body(), message_id="m-1", user_id="UA:1")
    )
    answer = await sdk.send(request)  # verifies the gateway signature and requestHash
    assert not answer.is_fault
    assert answer.envelope.body_child.findtext(f"{{{DEMO_NS}}}familyName") == "Kovalenko"
    assert answer.verified is not None
    assert "obmin gateway" in answer.verified.signer.certificate.subject.rfc4514_string()

    store = await open_audit_store(deployment.settings.audit)
    try:
        records = await store.query(message_id="m-1")
    finally:
        await store.close()
    assert [r.direction for r in records] == ["request", "response"]
    assert records[0].request_id == records[1].request_id
    assert records[0].client == str(CLIENT) and records[0].service == str(SERVICE)
    assert records[0].signer_thumbprint and records[0].auth_mode == "signature"
    assert records[1].outcome == "ok" and records[1].fault_code is None


async def test_zeep_binary_signature_interop_under_standard(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    cert = member_certs["client"]
    wsse = BinarySignature(
        str(cert.key_path),
        str(cert.cert_path),
        signature_method=xmlsec.Transform.RSA_SHA256,
        digest_method=xmlsec.Transform.SHA256,
    )
    zeep = ZeepClient(str(WSDL / "person-registry.wsdl"), wsse=wsse)
    headers = build_soap_request(
        ClientId("SEVDEIR-TEST", "GOV", "12345678", "WSCLIENT"), SERVICE, _body()
    ).find("{http://schemas.xmlsoap.org/soap/envelope/}Header")
    assert headers is not None
    message = zeep.create_message(
        zeep.service, "getPerson", rnokpp="1234567890", _soapheaders=list(headers)
    )
    signed = etree.tostring(message)

    root = await _post(deployment, signed)
    assert _fault(root) is None, etree.tostring(root)
    assert root.findtext(f".//{{{DEMO_NS}}}givenName") == "Olena"
    # obmin's signed response verifies with xmlsec (an implementation nobody here wrote).
    _xmlsec_verify(root, load_certificate(deployment.pki / "gateway" / "sign.crt"))
    request_hash = root.find(".//{http://x-road.eu/xsd/xroad.xsd}requestHash")
    assert request_hash is not None and request_hash.prefix == "xrd"  # not an invented ns0

    # One byte of the Body changed after signing: refused.
    tampered = signed.replace(b">1234567890<", b">1234567891<")
    assert tampered != signed
    assert _fault(await _post(deployment, tampered)) == "Client.InvalidSignatureValue"


def _xmlsec_verify(root: etree._Element, certificate: object) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    xmlsec.tree.add_ids(root, ["Id"])
    signature = xmlsec.tree.find_node(root, xmlsec.constants.NodeSignature)
    ctx = xmlsec.SignatureContext()
    pem = certificate.public_bytes(Encoding.PEM)  # type: ignore[attr-defined]
    ctx.key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem, None)
    ctx.verify(signature)  # raises xmlsec.Error when the signature does not verify


async def test_unsigned_request_from_signature_client_is_refused(deployment: Deployment) -> None:
    unsigned = etree.tostring(build_soap_request(CLIENT, SERVICE, _body()))
    assert _fault(await _post(deployment, unsigned)) == "Client.MissingSignature"


async def test_signature_by_another_member_is_incorrect_certificate(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    sdk = _sdk(deployment, member_certs["other"])
    request = sdk.sign(build_soap_request(CLIENT, SERVICE, _body()))
    assert _fault(await _post(deployment, request)) == "Client.IncorrectCertificate"


async def test_stale_signature_is_refused(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    old = datetime.now(UTC) - timedelta(hours=1)
    request = sdk.sign(build_soap_request(CLIENT, SERVICE, _body()), now=old)
    assert _fault(await _post(deployment, request)) == "Client.StaleMessage"


@pytest.mark.parametrize(
    ("subsystem", "expected"),
    [
        ("NOACCESS", "Server.ServerProxy.AccessDenied"),
        ("NOSUCH", "Server.ClientProxy.UnknownMember"),
    ],
)
async def test_access_is_denied_by_default(
    deployment: Deployment, member_certs: dict[str, IssuedCert], subsystem: str, expected: str
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    client = ClientId("SEVDEIR-TEST", "GOV", "12345678", subsystem)
    request = sdk.sign(build_soap_request(client, SERVICE, _body()))
    root = await _post(deployment, request)
    assert _fault(root) == expected
    detail = root.findtext(f".//{XRD}faultDetail")
    assert detail and len(detail) == 36  # the request id, a UUID


async def test_signed_body_moved_into_header_is_refused(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    root = etree.fromstring(sdk.sign(build_soap_request(CLIENT, SERVICE, _body())))
    soap = "{http://schemas.xmlsoap.org/soap/envelope/}"
    body = root.find(f"{soap}Body")
    header = root.find(f"{soap}Header")
    assert body is not None and header is not None
    root.remove(body)
    header.append(body)
    evil = etree.SubElement(root, f"{soap}Body")
    evil.append(_body("2345678901"))
    assert _fault(await _post(deployment, etree.tostring(root))) == "Client.InvalidSignatureValue"
