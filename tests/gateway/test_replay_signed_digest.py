"""Replay under the `standard` policy: xrd:id need not be signed, so the replay check is keyed
on what the key signed (the canonical SignedInfo) as well as on the message id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xmlsec
from lxml import etree
from zeep import Client as ZeepClient
from zeep.wsse.signature import BinarySignature

from adapters.client import build_soap_request
from gateway.server import create_client_app
from gateway.settings import AuditSettings
from registry.identifiers import ClientId
from security import IssuedCert
from tests.gateway.conftest import Deployment
from tests.gateway.test_signed_exchange import CLIENT, SERVICE, WSDL, _body, _sdk

WSCLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "WSCLIENT")
XRD = "http://x-road.eu/xsd/xroad.xsd"


def _zeep_message(cert: IssuedCert, message_id: str) -> bytes:
    """A request signed by zeep's BinarySignature: Body signed, no Timestamp, id unsigned."""
    wsse = BinarySignature(
        str(cert.key_path),
        str(cert.cert_path),
        signature_method=xmlsec.Transform.RSA_SHA256,
        digest_method=xmlsec.Transform.SHA256,
    )
    zeep = ZeepClient(str(WSDL / "person-registry.wsdl"), wsse=wsse)
    headers = build_soap_request(WSCLIENT, SERVICE, _body(), message_id=message_id).find(
        "{http://schemas.xmlsoap.org/soap/envelope/}Header"
    )
    assert headers is not None
    message = zeep.create_message(
        zeep.service, "getPerson", rnokpp="1234567890", _soapheaders=list(headers)
    )
    return etree.tostring(message)


def _with_id(message: bytes, new_id: str) -> bytes:
    root = etree.fromstring(message)
    element = root.find(f".//{{{XRD}}}id")
    assert element is not None
    element.text = new_id
    return etree.tostring(root)


async def _fault(client: Any, data: bytes) -> str | None:
    response = await client.post("/", data=data, headers={"Content-Type": "text/xml"})
    return etree.fromstring(await response.read()).findtext(".//faultcode")


async def test_a_re_identified_copy_is_a_replay(
    deployment: Deployment, member_certs: dict[str, IssuedCert]
) -> None:
    captured = _zeep_message(member_certs["client"], "zeep-1")
    assert await _fault(deployment.client, captured) is None
    assert await _fault(deployment.client, captured) == "Client.ReplayedMessage"
    # The attacker gives the captured message a new id: the signature still verifies
    # (the id is not signed under `standard`), but what was signed is the same.
    again = _with_id(captured, "zeep-1-replayed")
    assert await _fault(deployment.client, again) == "Client.ReplayedMessage"
    # A new message from the client, same content, is served (its SignedInfo differs).
    assert await _fault(deployment.client, _zeep_message(member_certs["client"], "zeep-2")) is None


async def test_untimed_messages_are_remembered_beyond_the_window(
    deployment: Deployment,
    member_certs: dict[str, IssuedCert],
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
) -> None:
    settings = deployment.settings.model_copy(
        update={"max_clock_skew_seconds": 1, "audit": AuditSettings(path=tmp_path / "b.db")}
    )
    client = await aiohttp_client(create_client_app(settings))
    captured = _zeep_message(member_certs["client"], "zeep-untimed")
    assert await _fault(client, captured) is None
    await asyncio.sleep(1.3)  # past the freshness window of 1 s
    # No Timestamp means no freshness: the signed digest outlives the window.
    assert await _fault(client, _with_id(captured, "zeep-untimed-2")) == "Client.ReplayedMessage"


async def test_strict_messages_keep_their_window(
    deployment: Deployment,
    member_certs: dict[str, IssuedCert],
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
) -> None:
    sdk = _sdk(deployment, member_certs["client"])
    request = sdk.sign(build_soap_request(CLIENT, SERVICE, _body(), message_id="strict-1"))
    assert await _fault(deployment.client, request) is None
    assert await _fault(deployment.client, request) == "Client.ReplayedMessage"
    # The id is signed under `strict`: changing it breaks the signature.
    assert await _fault(deployment.client, _with_id(request, "strict-2")) == (
        "Client.InvalidSignatureValue"
    )
