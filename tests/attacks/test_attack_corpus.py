"""Every file of the attack corpus gets its specific error, and the gateway keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from yarl import URL

from tests.support import GatewayFactory, ProviderBehaviour

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"

EXPECTED = {
    "xxe-file-entity.xml": "Client.InvalidXml",
    "xxe-parameter-entity.xml": "Client.InvalidXml",
    "external-dtd.xml": "Client.InvalidXml",
    "billion-laughs.xml": "Client.InvalidXml",
    "quadratic-blowup.xml": "Client.InvalidXml",
    "deep-nesting.xml": "Client.InvalidXml",
    "identifier-percent-encoded.xml": "Client.InvalidClientIdentifier",
    "identifier-unicode-lookalike.xml": "Client.InvalidClientIdentifier",
    "identifier-control-character.xml": "Client.InvalidClientIdentifier",
    "identifier-trailing-slash-smuggling.xml": "Client.InvalidClientIdentifier",
    "soapaction-spoofing.xml": "Client.InvalidSoapAction",
    "rest-path-traversal.target": "Client.InvalidRequest",
    "rest-path-traversal-encoded-slash.target": "Client.InvalidRequest",
    "rest-identifier-percent-encoded.target": "Client.InvalidServiceIdentifier",
    "rest-identifier-nul.target": "Client.InvalidServiceIdentifier",
}
HEADERS = {"Content-Type": "text/xml; charset=UTF-8"}


def test_every_corpus_file_has_an_expectation() -> None:
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_attack(name: str, make_gateway: GatewayFactory) -> None:
    answer = (HERE / "legitimate-answer.xml").read_bytes()
    behaviour = ProviderBehaviour(body=answer, content_type="text/xml")
    client = await make_gateway(behaviour)
    data = (CORPUS / name).read_bytes()
    if name.endswith(".target"):
        # Sent byte for byte: no client-side normalisation of dot segments or escapes.
        url = URL(str(client.make_url("/")).rstrip("/") + data.decode().strip(), encoded=True)
        response = await client.session.get(url, headers={"X-Road-Client": "EE/BUSINESS/consumer"})
        assert response.headers.get("X-Road-Error") == EXPECTED[name], await response.text()
    else:
        headers = dict(HEADERS)
        if name == "soapaction-spoofing.xml":
            headers["SOAPAction"] = '"http://producer.x-road.eu/deleteEverything"'
        response = await client.post("/", data=data, headers=headers)
        code = etree.fromstring(await response.read()).findtext(".//faultcode")
        assert code == EXPECTED[name]
    assert behaviour.received == []  # nothing reached the provider
    legit = await client.post(
        "/", data=(HERE / "legitimate-request.xml").read_bytes(), headers=HEADERS
    )
    assert etree.fromstring(await legit.read()).findtext(".//faultcode") is None
