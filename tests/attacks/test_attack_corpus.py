"""Every file of the attack corpus gets its specific error, and the gateway keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree
from yarl import URL

from tests.attacks.wrapping import WrappingSigner, add_signed_clients, apply_template
from tests.support import GatewayFactory, ProviderBehaviour

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"

REST_SERVICE = "/r1/EE/BUSINESS/producer/subsys2/persons/lookup"
XROAD_DATA = Path(__file__).resolve().parents[3] / "shared" / "xroad-data"
SMALL_LIMIT = 64 * 1024  # the request limit the oversize cases run under

# name -> (fault code, a fragment of the fault string that says what was wrong)
EXPECTED: dict[str, tuple[str, str]] = {
    "xxe-file-entity.xml": ("Client.InvalidXml", "declares a DTD, which is not allowed"),
    "xxe-parameter-entity.xml": ("Client.InvalidXml", "Attempt to load network entity"),
    "external-dtd.xml": ("Client.InvalidXml", "Attempt to load network entity"),
    "billion-laughs.xml": ("Client.InvalidXml", "entity amplification factor exceeded"),
    "quadratic-blowup.xml": ("Client.InvalidXml", "declares a DTD, which is not allowed"),
    "deep-nesting.xml": ("Client.InvalidXml", "is nested deeper than 64 levels"),
    "identifier-percent-encoded.xml": ("Client.InvalidClientIdentifier", "'con%2Fsumer'"),
    "identifier-unicode-lookalike.xml": ("Client.InvalidClientIdentifier", "not allowed"),
    "identifier-control-character.xml": ("Client.InvalidClientIdentifier", "'con\\tsumer'"),
    "identifier-trailing-tab.xml": ("Client.InvalidClientIdentifier", "'consumer\\t'"),
    "identifier-trailing-nel.xml": ("Client.InvalidClientIdentifier", "'consumer\\x85'"),
    "identifier-trailing-nbsp.xml": ("Client.InvalidClientIdentifier", "'consumer\\xa0'"),
    "identifier-zero-width-space.xml": ("Client.InvalidClientIdentifier", "'consumer\\u200b'"),
    # Indentation inside an identifier element is not layout: X-Road's proxy vectors never
    # indent there, and trimming would make "consumer&#xA0;" pass as "consumer".
    "identifier-pretty-printed.xml": ("Client.InvalidClientIdentifier", "'\\n        consumer"),
    "identifier-trailing-slash-smuggling.xml": (
        "Client.InvalidClientIdentifier",
        "'consumer/subsys1'",
    ),
    "service-identifier-trailing-nbsp.xml": (
        "Client.InvalidServiceIdentifier",
        "'getState\\xa0'",
    ),
    "soapaction-spoofing.xml": ("Client.InvalidSoapAction", "names operation 'deleteEverything'"),
    "oversize-soap-body.xml": ("Client.MessageTooLarge", f"larger than {SMALL_LIMIT} bytes"),
    "rest-path-traversal.target": ("Client.InvalidRequest", ""),
    "rest-path-traversal-encoded-slash.target": ("Client.InvalidRequest", ""),
    "rest-identifier-percent-encoded.target": ("Client.InvalidServiceIdentifier", ""),
    "rest-identifier-nul.target": ("Client.InvalidServiceIdentifier", ""),
    "oversize-rest-body.bin": ("Client.MessageTooLarge", ""),
    # JSON request bodies are validated before forwarding (SPEC 11): each is refused with
    # Client.InvalidJson and a message saying what is wrong.
    "json-duplicate-keys.json": ("Client.InvalidJson", "the key 'rnokpp' more than once"),
    "json-deep-nesting.json": ("Client.InvalidJson", "nested deeper than 64 levels"),
    "json-huge-numbers.json": ("Client.InvalidJson", "digits; at most 100 are accepted"),
    "json-huge-exponent.json": ("Client.InvalidJson", "decimal exponent beyond"),
    "json-tiny-exponent.json": ("Client.InvalidJson", "decimal exponent beyond"),
    "json-float-overflow.json": ("Client.InvalidJson", "overflows a 64-bit float"),
    "json-nan.json": ("Client.InvalidJson", "NaN is not a JSON value"),
    "json-infinity.json": ("Client.InvalidJson", "Infinity is not a JSON value"),
    "json-invalid-utf8.json": ("Client.InvalidJson", "not valid UTF-8 (byte 10)"),
    "json-byte-order-mark.json": ("Client.InvalidJson", "byte order mark"),
    "json-trailing-document.json": ("Client.InvalidJson", "Extra data at line 1, column 26"),
    "json-control-character.json": (
        "Client.InvalidJson",
        "Invalid control character at line 1, column 15",
    ),
    "json-truncated.json": ("Client.InvalidJson", "not valid JSON"),
    # Signature wrapping: templates around a message signed at test time (see wrapping.py).
    "signature-wrapping-body-in-header.xml": (
        "Client.InvalidSignatureValue",
        "the signed Body is not the Envelope's Body (signature wrapping)",
    ),
    "signature-wrapping-body-in-security.xml": (
        "Client.InvalidSignatureValue",
        "the signed Body is not the Envelope's Body (signature wrapping)",
    ),
    "signature-wrapping-duplicate-body-id.xml": (
        "Client.InvalidSignatureValue",
        "occurs more than once",
    ),
    "signature-wrapping-second-body.xml": (
        "Client.InvalidSoap",
        "the envelope may hold only one Header and one Body",
    ),
    "signature-wrapping-second-signature.xml": (
        "Client.InvalidSignatureValue",
        "the message holds more than one ds:Signature",
    ),
    "signature-wrapping-signature-outside-security.xml": (
        "Client.InvalidSignatureValue",
        "the ds:Signature is not a child of the wsse:Security header",
    ),
    "signature-wrapping-second-security.xml": (
        "Client.InvalidSignatureValue",
        "the message has more than one wsse:Security header",
    ),
    "signature-wrapping-client-swapped.xml": (
        "Client.InvalidSignatureValue",
        "strict policy requires a signed X-Road 'client' header in soap:Header",
    ),
    "signature-wrapping-timestamp-moved.xml": (
        "Client.InvalidSignatureValue",
        "strict policy requires a signed wsu:Timestamp",
    ),
    "signature-wrapping-id-duplicated.xml": (
        "Client.DuplicateHeaderField",
        "header field id appears more than once",
    ),
}
HEADERS = {"Content-Type": "text/xml; charset=UTF-8"}
WRAPPING = sorted(name for name in EXPECTED if name.startswith("signature-wrapping-"))
PLAIN = sorted(name for name in EXPECTED if name not in WRAPPING)


def test_every_corpus_file_has_an_expectation() -> None:
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED)
    assert len(WRAPPING) >= 8


def _fault(body: bytes) -> tuple[str | None, str]:
    root = etree.fromstring(body)
    return root.findtext(".//faultcode"), root.findtext(".//faultstring") or ""


async def _legitimate_request_is_served(client: TestClient[web.Request, web.Application]) -> None:
    legit = await client.post(
        "/", data=(HERE / "legitimate-request.xml").read_bytes(), headers=HEADERS
    )
    assert _fault(await legit.read())[0] is None


@pytest.mark.parametrize("name", PLAIN)
async def test_attack(name: str, make_gateway: GatewayFactory) -> None:
    answer = (HERE / "legitimate-answer.xml").read_bytes()
    behaviour = ProviderBehaviour(body=answer, content_type="text/xml")
    small = name.startswith("oversize-")
    extra = {"limits": {"max_request_bytes": SMALL_LIMIT}} if small else None
    client = await make_gateway(behaviour, None, extra)
    data = (CORPUS / name).read_bytes()
    code, fragment = EXPECTED[name]
    if name.endswith((".json", ".bin")):
        response = await client.post(
            REST_SERVICE,
            data=data,
            headers={"X-Road-Client": "EE/BUSINESS/consumer", "Content-Type": "application/json"},
        )
        assert response.status == 400
        assert response.headers.get("X-Road-Error") == code, await response.text()
        error = await response.json()
        assert error["type"] == code
        assert fragment in error["message"], error["message"]
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
        assert response.headers.get("X-Road-Error") == code, await response.text()
    else:
        headers = dict(HEADERS)
        if name == "soapaction-spoofing.xml":
            headers["SOAPAction"] = '"http://producer.x-road.eu/deleteEverything"'
        response = await client.post("/", data=data, headers=headers)
        got, faultstring = _fault(await response.read())
        assert got == code
        assert fragment in faultstring, faultstring
    assert behaviour.received == []  # nothing reached the provider
    await _legitimate_request_is_served(client)


@pytest.mark.parametrize("name", WRAPPING)
async def test_signature_wrapping(
    name: str, make_gateway: GatewayFactory, wrapping_signer: WrappingSigner
) -> None:
    signed, answer = wrapping_signer.signed_request()
    behaviour = ProviderBehaviour(body=answer, content_type="text/xml")
    client = await make_gateway(behaviour, add_signed_clients)
    attack = apply_template((CORPUS / name).read_bytes(), signed)
    response = await client.post("/", data=attack, headers=HEADERS)
    code, fragment = EXPECTED[name]
    got, faultstring = _fault(await response.read())
    assert got == code, faultstring
    assert fragment in faultstring, faultstring
    assert behaviour.received == []
    # The untouched signed message is served (so the attack, not the set-up, was refused),
    # and so is the unsigned legitimate request.
    control = await client.post("/", data=signed, headers=HEADERS)
    assert _fault(await control.read())[0] is None
    assert len(behaviour.received) == 1
    behaviour.body = (HERE / "legitimate-answer.xml").read_bytes()
    await _legitimate_request_is_served(client)


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
