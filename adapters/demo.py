"""`obmin demo`: one signed getPerson request through a running gateway, shown step by step.

What a newcomer runs after `make run` to see the whole exchange: the signed request, the
gateway-signed answer, and the two audit records the gateway wrote for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
from lxml import etree

from adapters.client import XRoadSoapClient, build_soap_request
from gateway.audit import query_records_cli
from gateway.settings import Settings
from registry.identifiers import ClientId, ServiceId
from security import TrustStore, load_certificate, load_private_key

__all__ = ["DEMO_CLIENT", "DEMO_SERVICE", "run_demo"]

DEMO_CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
DEMO_SERVICE = ServiceId(ClientId("SEVDEIR-TEST", "GOV", "87654321", "REGISTRY"), "getPerson", "v1")
DEMO_NS = "http://registry.example.gov.ua/person"


async def run_demo(settings: Settings, *, pki_dir: Path) -> int:
    """Send the demo request, print what happened, return 0 when the exchange succeeded."""
    member_dir = pki_dir / "members" / DEMO_CLIENT.member.member_code
    # The development PKI encrypts its keys with the gateway's passphrase (`make pki`).
    key = load_private_key(member_dir / "sign.key", settings.keys.passphrase(os.environ))
    certificate = load_certificate(member_dir / "sign.crt")
    gateway_trust = TrustStore([load_certificate(pki_dir / "ca" / "ca.crt")])
    url = f"http://{settings.client.host}:{settings.client.port}/"

    body = etree.Element(f"{{{DEMO_NS}}}getPerson", nsmap={"p": DEMO_NS})
    etree.SubElement(body, f"{{{DEMO_NS}}}rnokpp").text = "1234567890"
    envelope = build_soap_request(DEMO_CLIENT, DEMO_SERVICE, body, user_id="UA:demo-officer")
    async with aiohttp.ClientSession() as session:
        client = XRoadSoapClient(
            url, key=key, certificate=certificate, gateway_trust=gateway_trust, session=session
        )
        request = client.sign(envelope)
        print(f"--> POST {url} ({len(request)} bytes, signed by {DEMO_CLIENT.member})")
        answer = await client.send(request)
    print("<-- answer:")
    print(answer.raw.decode("utf-8"))
    if answer.is_fault:
        print("The gateway answered with a fault (see faultcode above).")
        return 1
    assert answer.verified is not None and answer.envelope.header is not None
    print(f"answer signature verified: signed by {answer.verified.signer.certificate.subject}")
    print(f"requestHash matches the request: {answer.envelope.header.request_hash}")
    print("\naudit records of this exchange (obmin audit query --message-id ...):")
    print(await query_records_cli(settings.audit, message_id=answer.envelope.header.id))
    return 0
