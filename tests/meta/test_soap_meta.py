"""SOAP metaservices against the PR-META examples, the metadata schema and the access rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.meta import (
    WSDL_ENDPOINT_ADDRESS,
    MetaAnswer,
    MetaError,
    answer_soap_metaservice,
    is_metaservice,
)
from registry import ClientId, Registry, ServiceId

from .conftest import (
    CLIENT,
    LIMITS,
    OTHER,
    PROVIDER,
    RegistryMaker,
    answer,
    content,
    envelope_of,
    response_of,
    shape,
    soap_request,
)

XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDS = "http://x-road.eu/xsd/identifiers"
SOAP11_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap/}address"
SOAP12_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap12/}address"


def listed(result: MetaAnswer) -> list[ServiceId]:
    envelope, _ = response_of(result)
    found = []
    for element in envelope.body_child:
        parts = {etree.QName(c).localname: (c.text or "").strip() for c in element}
        provider = ClientId(
            parts["xRoadInstance"],
            parts["memberClass"],
            parts["memberCode"],
            parts.get("subsystemCode"),
        )
        found.append(ServiceId(provider, parts["serviceCode"], parts.get("serviceVersion")))
    return found


# --- the PR-META examples, request in, response compared -------------------------------------

PR_META_REGISTRY = {
    "00-instance.yaml": "instance: Inst1\n",
    "10-members.yaml": """\
members:
  - {id: Inst1/MemberClass1/ClientId, name: Client}
  - id: Inst1/MemberClass1/ProviderId
    name: Provider
    subsystems: [{code: Subsystem1}]
""",
    "20-services.yaml": """\
services:
  - {provider: Inst1/MemberClass1/ProviderId/Subsystem1, code: allowedService, version: v1,
     type: soap, url: 'http://127.0.0.1:1/'}
  - {provider: Inst1/MemberClass1/ProviderId/Subsystem1, code: disallowedService, version: v1,
     type: soap, url: 'http://127.0.0.1:1/'}
  - {provider: Inst1/MemberClass1/ProviderId/Subsystem1, code: restService, type: rest,
     url: 'http://127.0.0.1:1/'}
""",
    "30-access.yaml": """\
access:
  - {provider: Inst1/MemberClass1/ProviderId/Subsystem1, service: allowedService,
     clients: [Inst1/MemberClass1/ClientId]}
  - {provider: Inst1/MemberClass1/ProviderId/Subsystem1, service: restService,
     clients: [Inst1/MemberClass1/ClientId]}
""",
}


@pytest.mark.parametrize(
    ("request_file", "response_file", "body"),
    [
        ("pr-meta_C.2_listMethods-request.xml", "pr-meta_C.3_listMethods-response.xml",
         "listMethodsResponse"),
        ("pr-meta_C.4_allowedMethods-request.xml", "pr-meta_C.5_allowedMethods-response.xml",
         "allowedMethodsResponse"),
    ],
)  # fmt: skip
def test_method_lists_match_pr_meta_examples(
    make_registry: RegistryMaker,
    xroad_data: Path,
    metainfo_schema: etree.XMLSchema,
    request_file: str,
    response_file: str,
    body: str,
) -> None:
    examples = xroad_data / "spec-examples" / "pr-meta"
    registry = make_registry({**PR_META_REGISTRY, "docs/petstore.yaml": None})
    result = answer(registry, envelope_of((examples / request_file).read_bytes()))
    assert result.content_type.startswith("text/xml")
    envelope, _ = response_of(result)
    expected = etree.fromstring((examples / response_file).read_bytes())
    # Same elements, attributes and values; requestHash is the pipeline's to add.
    assert content(envelope.root, frozenset({"requestHash"})) == content(
        expected, frozenset({"requestHash"})
    )
    assert envelope.body_child.tag == f"{{{XROAD}}}{body}"
    metainfo_schema.assertValid(etree.ElementTree(envelope.body_child))


def test_get_wsdl_matches_pr_meta_example(
    make_registry: RegistryMaker, xroad_data: Path, tmp_path: Path
) -> None:
    examples = xroad_data / "spec-examples" / "pr-meta"
    wsdl = xroad_data / "wsdl" / "metaservice" / "wsdl.wsdl"  # upstream getWsdl test file
    registry = make_registry(
        {
            "00-instance.yaml": "instance: FI\n",
            "10-members.yaml": "members:\n  - {id: FI/COM/111, name: Company, subsystems: "
            "[{code: SUB}]}\n",
            "20-services.yaml": "services:\n  - {provider: FI/COM/111/SUB, code: getRandom, "
            f"version: v1, type: soap, url: 'http://127.0.0.1:1/', wsdl: '{wsdl.resolve()}'}}\n",
            "30-access.yaml": None,
            "docs/petstore.yaml": None,
        }
    )
    request = envelope_of((examples / "pr-meta_C.6_getWsdl-request.xml").read_bytes())
    result = answer(registry, request)
    assert result.content_type.startswith("multipart/related")
    envelope, payload = response_of(result)
    expected = etree.fromstring((examples / "pr-meta_C.7_getWsdl-response.xml").read_bytes())
    skip = frozenset({"requestHash"})
    assert content(envelope.root, skip) == content(expected, skip)
    assert envelope.header is not None and request.header is not None
    assert envelope.header.echo_fields() == request.header.echo_fields()
    (attachment,) = payload.attachments
    assert attachment.headers["content-type"].startswith("text/xml")
    assert attachment.headers["content-transfer-encoding"] == "binary"
    assert re.fullmatch(r"<wsdl=[0-9a-f]+@x-road\.eu>", attachment.headers["content-id"])
    # C.8 is an excerpt that is not well-formed XML; its address is what ours must say.
    c8 = (examples / "pr-meta_C.8_getWsdl-response-attachment.wsdl").read_text()
    (example_location,) = re.findall(r'<soap:address location="([^"]+)"', c8)
    locations = [
        a.get("location") for a in etree.fromstring(attachment.content).iter(SOAP11_ADDRESS)
    ]
    assert locations == [example_location] == [WSDL_ENDPOINT_ADDRESS]
    assert b"getRandom" in attachment.content


def test_proxy_test_vectors_list_methods(make_registry: RegistryMaker, xroad_data: Path) -> None:
    """X-Road's own proxy test queries (member-level provider, empty issue) are answered."""
    registry = make_registry(
        {
            "00-instance.yaml": "instance: EE\n",
            "10-members.yaml": "members:\n  - {id: EE/BUSINESS/consumer, name: C}\n"
            "  - {id: EE/BUSINESS/producer, name: P}\n",
            "20-services.yaml": "services:\n  - {provider: EE/BUSINESS/producer, code: getState, "
            "type: soap, url: 'http://127.0.0.1:1/'}\n",
            "30-access.yaml": None,
            "docs/petstore.yaml": None,
        }
    )
    queries = xroad_data / "proxy-tests" / "queries"
    listing = answer(registry, envelope_of((queries / "listMethods.query").read_bytes()))
    producer = ClientId("EE", "BUSINESS", "producer")
    assert listed(listing) == [ServiceId(producer, "getState")]
    allowed = answer(registry, envelope_of((queries / "allowedMethods.query").read_bytes()))
    assert listed(allowed) == []
    envelope, _ = response_of(allowed)
    assert envelope.header is not None and envelope.header.issue == ""


# --- access, exactly ------------------------------------------------------------------------


def test_list_methods_lists_soap_services_of_the_provider_only(
    make_registry: RegistryMaker, metainfo_schema: etree.XMLSchema
) -> None:
    registry = make_registry()
    result = answer(registry, soap_request(OTHER, PROVIDER, "listMethods"))
    assert listed(result) == [
        ServiceId(PROVIDER, "getPerson", "v1"),
        ServiceId(PROVIDER, "getPerson", "v2"),
        ServiceId(PROVIDER, "listPersons"),
    ]
    metainfo_schema.assertValid(etree.ElementTree(response_of(result)[0].body_child))


def test_allowed_methods_follow_grants_and_revocations(make_registry: RegistryMaker) -> None:
    def allowed(registry: Registry, client: ClientId) -> list[ServiceId]:
        found = listed(answer(registry, soap_request(client, PROVIDER, "allowedMethods")))
        soap = [e for e in registry.services_of(PROVIDER) if e.type == "soap"]
        assert found == [e.id for e in soap if registry.is_allowed(client, e.id)]
        return found

    base = make_registry()
    assert allowed(base, CLIENT) == [
        ServiceId(PROVIDER, "getPerson", "v1"),
        ServiceId(PROVIDER, "getPerson", "v2"),
    ]
    assert allowed(base, OTHER) == []
    granted = make_registry(
        {
            "30-access.yaml": """\
access:
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, service: getPerson,
     clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]}
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, service: listPersons, groups: [readers]}
""",
            "40-groups.yaml": "groups:\n  - {code: readers, members: "
            "[SEVDEIR-TEST/GOV/12345678/OTHER, SEVDEIR-TEST/GOV/12345678/CLIENT]}\n",
        }
    )
    assert allowed(granted, CLIENT) == [
        ServiceId(PROVIDER, "getPerson", "v1"),
        ServiceId(PROVIDER, "getPerson", "v2"),
        ServiceId(PROVIDER, "listPersons"),
    ]
    assert allowed(granted, OTHER) == [ServiceId(PROVIDER, "listPersons")]
    revoked = make_registry(
        {
            "30-access.yaml": "access:\n  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, "
            "service: listPersons, clients: [SEVDEIR-TEST/GOV/12345678/OTHER]}\n"
        }
    )
    assert allowed(revoked, CLIENT) == []
    assert allowed(revoked, OTHER) == [ServiceId(PROVIDER, "listPersons")]
    member = ClientId("SEVDEIR-TEST", "GOV", "12345678")  # the member, not its subsystem
    assert allowed(base, member) == []


def test_answer_echoes_x_road_headers_only(make_registry: RegistryMaker) -> None:
    request = soap_request(CLIENT, PROVIDER, "listMethods")
    header = request.root[0]
    etree.SubElement(header, f"{{{XROAD}}}requestHash").text = "Zm9yZ2Vk"
    etree.SubElement(header, "{http://example.org/ext}tracking").text = "t"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    header[0].set(f"{{{wsu}}}Id", "client-signed")
    request = envelope_of(etree.tostring(request.root))
    envelope, _ = response_of(answer(make_registry(), request))
    assert envelope.header is not None and request.header is not None
    assert envelope.header.echo_fields() == request.header.echo_fields()
    assert envelope.header.request_hash is None
    names = [etree.QName(c).localname for c in envelope.root[0]]
    assert names == ["client", "service", "id", "userId", "protocolVersion"]
    assert b"client-signed" not in etree.tostring(envelope.root)
    assert envelope.root[0][0].get(f"{{{IDS}}}objectType") == "SUBSYSTEM"


def test_response_shape_equals_pr_meta_shape(
    make_registry: RegistryMaker, xroad_data: Path
) -> None:
    """Whatever the registry, the answer has the example's elements (modulo list lengths)."""
    result = answer(make_registry(), soap_request(CLIENT, PROVIDER, "allowedMethods"))
    envelope, _ = response_of(result)
    example = etree.parse(
        str(xroad_data / "spec-examples" / "pr-meta" / "pr-meta_C.5_allowedMethods-response.xml")
    ).getroot()
    ours = envelope.body_child
    theirs = example.find(f".//{{{XROAD}}}allowedMethodsResponse")
    assert theirs is not None
    assert shape(ours)[:2] == shape(theirs)[:2]
    assert {s for s in shape(ours)[2]} == {s for s in shape(theirs)[2]}


def test_unregistered_provider_is_unknown_service(make_registry: RegistryMaker) -> None:
    stranger = ClientId("SEVDEIR-TEST", "GOV", "00000000", "NOBODY")
    for code in ("listMethods", "allowedMethods"):
        with pytest.raises(MetaError) as caught:
            answer(make_registry(), soap_request(CLIENT, stranger, code))
        assert caught.value.code == "UnknownService"


def test_client_must_be_the_header_client(make_registry: RegistryMaker) -> None:
    request = soap_request(CLIENT, PROVIDER, "allowedMethods")
    with pytest.raises(MetaError) as caught:
        answer_soap_metaservice(
            make_registry(), request, OTHER, read_document=Path.read_bytes, limits=LIMITS
        )
    assert caught.value.code == "InternalError"


def test_is_metaservice() -> None:
    assert all(is_metaservice(c) for c in ("listMethods", "allowedMethods", "getWsdl"))
    assert not any(is_metaservice(c) for c in ("getOpenAPI", "listClients", "getPerson", ""))
