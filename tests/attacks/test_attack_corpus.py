"""Every file of the attack corpus gets its specific error, and the gateway keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from yarl import URL

from tests.support import GatewayFactory, ProviderBehaviour

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"

REST_SERVICE = "/r1/EE/BUSINESS/producer/subsys2/persons/lookup"
XROAD_DATA = Path(__file__).resolve().parents[3] / "shared" / "xroad-data"

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
    # JSON request bodies are validated before forwarding (SPEC 11): each is refused with
    # Client.InvalidJson (or MessageTooLarge) and a message saying what is wrong.
    "json-duplicate-keys.json": "Client.InvalidJson",
    "json-deep-nesting.json": "Client.InvalidJson",
    "json-huge-numbers.json": "Client.InvalidJson",
    "json-huge-exponent.json": "Client.InvalidJson",
    "json-tiny-exponent.json": "Client.InvalidJson",
    "json-float-overflow.json": "Client.InvalidJson",
    "json-nan.json": "Client.InvalidJson",
    "json-infinity.json": "Client.InvalidJson",
    "json-invalid-utf8.json": "Client.InvalidJson",
    "json-byte-order-mark.json": "Client.InvalidJson",
    "json-trailing-document.json": "Client.InvalidJson",
    "json-control-character.json": "Client.InvalidJson",
    "json-truncated.json": "Client.InvalidJson",
}
# What the refusal's message must say, for the JSON files.
JSON_REASONS = {
    "json-duplicate-keys.json": "the key 'rnokpp' more than once",
    "json-deep-nesting.json": "nested deeper than 64 levels",
    "json-huge-numbers.json": "digits; at most 100 are accepted",
    "json-huge-exponent.json": "decimal exponent beyond",
    "json-tiny-exponent.json": "decimal exponent beyond",
    "json-float-overflow.json": "overflows a 64-bit float",
    "json-nan.json": "NaN is not a JSON value",
    "json-infinity.json": "Infinity is not a JSON value",
    "json-invalid-utf8.json": "not valid UTF-8 (byte 10)",
    "json-byte-order-mark.json": "byte order mark",
    "json-trailing-document.json": "Extra data at line 1, column 26",
    "json-control-character.json": "Invalid control character at line 1, column 15",
    "json-truncated.json": "not valid JSON",
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
    if name.endswith(".json"):
        response = await client.post(
            REST_SERVICE,
            data=data,
            headers={"X-Road-Client": "EE/BUSINESS/consumer", "Content-Type": "application/json"},
        )
        assert response.status == 400
        assert response.headers["X-Road-Error"] == EXPECTED[name]
        error = await response.json()
        assert error["type"] == EXPECTED[name]
        assert JSON_REASONS[name] in error["message"], error["message"]
        assert behaviour.received == []
        legit_json = await client.post(  # the REST side keeps serving too
            REST_SERVICE,
            data=b'{"rnokpp": "1234567890"}',
            headers={"X-Road-Client": "EE/BUSINESS/consumer", "Content-Type": "application/json"},
        )
        assert legit_json.status == 200
        behaviour.received.clear()
    elif name.endswith(".target"):
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


@pytest.mark.skipif(not (XROAD_DATA / "wsdl").is_dir(), reason=f"no X-Road data at {XROAD_DATA}")
async def test_xxe_wsdl_registered_for_a_service(make_gateway: GatewayFactory) -> None:
    """X-Road's own XXE vector as a service's registered WSDL: getWsdl refuses to read it."""
    xxe = XROAD_DATA / "wsdl" / "admin-service" / "xxe.wsdl"

    def register(registry: dict[str, object]) -> None:
        for service in registry["services"]:  # type: ignore[attr-defined]
            if service["code"] == "getState":
                service["wsdl"] = str(xxe)

    answer = (HERE / "legitimate-answer.xml").read_bytes()
    client = await make_gateway(ProviderBehaviour(body=answer, content_type="text/xml"), register)
    request = (HERE / "legitimate-request.xml").read_bytes()
    get_wsdl = request.replace(
        b"<id:serviceCode>getState</id:serviceCode>", b"<id:serviceCode>getWsdl</id:serviceCode>"
    )
    get_wsdl = get_wsdl.replace(
        b"<xroad:getState>x</xroad:getState>",
        b"<xroad:getWsdl><xroad:serviceCode>getState</xroad:serviceCode></xroad:getWsdl>",
    )
    response = await client.post("/", data=get_wsdl, headers=HEADERS)
    code = etree.fromstring(await response.read()).findtext(".//faultcode")
    assert code == "Server.ServerProxy.ServiceFailed.InvalidXml"
    legit = await client.post("/", data=request, headers=HEADERS)
    assert etree.fromstring(await legit.read()).findtext(".//faultcode") is None
