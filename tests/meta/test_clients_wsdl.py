"""``GET /listClients`` and Trembita's ``GET /wsdl?...`` against PR-META and the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from lxml import etree

from gateway.meta import (
    WSDL_ENDPOINT_ADDRESS,
    MetaError,
    answer_list_clients,
    answer_wsdl_query,
)
from registry import Registry

from .conftest import LIMITS, RegistryMaker, shape

XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDS = "http://x-road.eu/xsd/identifiers"


def pr_meta(xroad_data: Path, name: str) -> bytes:
    return (xroad_data / "spec-examples" / "pr-meta" / name).read_bytes()


def test_list_clients_xml_matches_c1_and_the_schema(
    make_registry: RegistryMaker, xroad_data: Path, metainfo_schema: etree.XMLSchema
) -> None:
    for accept in (None, "text/xml", "*/*", "application/xml, application/json;q=0.5"):
        result = answer_list_clients(make_registry(), "", accept)
        assert result.content_type.startswith("text/xml")
        root = etree.fromstring(result.body)
        metainfo_schema.assertValid(etree.ElementTree(root))
    example = etree.fromstring(pr_meta(xroad_data, "pr-meta_C.1_listClients-response.xml"))
    metainfo_schema.assertValid(etree.ElementTree(example))
    assert root.tag == example.tag == f"{{{XROAD}}}clientList"
    # The example has a member, and a subsystem with a name of its own: compare like with like.
    ours = {s[2][0][1] + tuple(c[0] for c in s[2]): s for s in (shape(m) for m in root)}
    theirs = {s[2][0][1] + tuple(c[0] for c in s[2]): s for s in (shape(m) for m in example)}
    assert set(theirs) <= set(ours)
    for key in theirs:
        assert ours[key] == theirs[key]
    members = [
        (m.find(f"{{{XROAD}}}id").get(f"{{{IDS}}}objectType"),  # type: ignore[union-attr]
         m.findtext(f"{{{XROAD}}}name"), m.findtext(f"{{{XROAD}}}subsystemName"))
        for m in root
    ]  # fmt: skip
    assert members == [
        ("MEMBER", "Ministry of Social Policy", None),
        ("SUBSYSTEM", "Ministry of Social Policy", "Benefits"),
        ("SUBSYSTEM", "Ministry of Social Policy", None),  # OTHER has no name of its own
        ("MEMBER", "State Registry Service", None),
        ("SUBSYSTEM", "State Registry Service", "Person Registry"),
    ]


def test_list_clients_json_matches_c1(make_registry: RegistryMaker, xroad_data: Path) -> None:
    for accept in ("application/json", "application/xml;q=0.5, application/json"):
        result = answer_list_clients(make_registry(), "", accept)
        assert result.content_type.startswith("application/json")
        ours: dict[str, Any] = orjson.loads(result.body)
    theirs = orjson.loads(pr_meta(xroad_data, "pr-meta_C.1_listClients-response.json"))
    assert list(ours) == list(theirs) == ["member"]

    def kinds(document: dict[str, Any]) -> dict[tuple[str, ...], list[Any]]:
        return {tuple(item): [list(item["id"])] for item in document["member"]}

    assert kinds(theirs).items() <= kinds(ours).items()
    benefits = next(m for m in ours["member"] if m.get("subsystem_name") == "Benefits")
    assert benefits == {
        "id": {
            "member_class": "GOV",
            "member_code": "12345678",
            "subsystem_code": "CLIENT",
            "object_type": "SUBSYSTEM",
            "xroad_instance": "SEVDEIR-TEST",
        },
        "name": "Ministry of Social Policy",
        "subsystem_name": "Benefits",
    }


def test_list_clients_instance_filter(make_registry: RegistryMaker) -> None:
    registry = make_registry()
    accept = "application/json"
    everyone = orjson.loads(answer_list_clients(registry, "", accept).body)["member"]
    assert len(everyone) == 5
    same = answer_list_clients(registry, "xRoadInstance=SEVDEIR-TEST", accept)
    assert orjson.loads(same.body)["member"] == everyone
    assert orjson.loads(answer_list_clients(registry, "xRoadInstance=EE", accept).body) == {
        "member": []
    }
    for query, code in (
        ("xRoadInstance=a%20b", "InvalidServiceIdentifier"),
        ("xRoadInstance=EE&xRoadInstance=FI", "InvalidRequest"),
    ):
        with pytest.raises(MetaError) as caught:
            answer_list_clients(registry, query, accept)
        assert caught.value.code == code


def wsdl_query(registry: Registry, query: str) -> etree._Element:
    result = answer_wsdl_query(registry, query, read_document=Path.read_bytes, limits=LIMITS)
    assert result.content_type.startswith("text/xml")
    return etree.fromstring(result.body)


BASE_QUERY = "xRoadInstance=SEVDEIR-TEST&memberClass=GOV&memberCode=87654321&subsystemCode=REGISTRY"


@pytest.mark.parametrize(
    "tail",
    ["&serviceCode=getPerson&serviceVersion=v1", "&serviceCode=getPerson&version=v2",
     "&serviceCode=getPerson&serviceVersion=v1&version=v1"],
)  # fmt: skip
def test_trembita_wsdl_query(make_registry: RegistryMaker, tail: str) -> None:
    wsdl = wsdl_query(make_registry(), BASE_QUERY + tail)
    locations = {
        a.get("location")
        for a in wsdl.iter(
            "{http://schemas.xmlsoap.org/wsdl/soap/}address",
            "{http://schemas.xmlsoap.org/wsdl/soap12/}address",
        )
    }
    assert locations == {WSDL_ENDPOINT_ADDRESS}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "InvalidRequest"),
        ("memberClass=GOV&memberCode=87654321&serviceCode=getPerson", "InvalidRequest"),
        (BASE_QUERY, "InvalidRequest"),
        (BASE_QUERY + "&serviceCode=", "InvalidRequest"),
        (BASE_QUERY + "&serviceCode=getPerson&serviceCode=x", "InvalidRequest"),
        (BASE_QUERY + "&serviceCode=getPerson&serviceVersion=v1&version=v2", "InvalidRequest"),
        (BASE_QUERY + "&serviceCode=get%2FPerson&serviceVersion=v1", "InvalidServiceIdentifier"),
        (BASE_QUERY + "&serviceCode=getPerson&serviceVersion=v%01", "InvalidServiceIdentifier"),
        (BASE_QUERY + "&serviceCode=getPerson", "UnknownService"),
        (BASE_QUERY + "&serviceCode=persons", "ServiceType"),
        ("xRoadInstance=SEVDEIR-TEST&memberClass=GOV&memberCode=87654321&serviceCode=getPerson"
         "&serviceVersion=v1", "UnknownService"),  # the member, not its subsystem
    ],
)  # fmt: skip
def test_trembita_wsdl_query_errors(make_registry: RegistryMaker, query: str, code: str) -> None:
    with pytest.raises(MetaError) as caught:
        wsdl_query(make_registry(), query)
    assert caught.value.code == code


def test_trembita_wsdl_query_refuses_xxe(make_registry: RegistryMaker, xroad_data: Path) -> None:
    xxe = (xroad_data / "wsdl" / "admin-service" / "xxe.wsdl").read_bytes()
    registry = make_registry({"docs/registry.wsdl": xxe})
    with pytest.raises(MetaError) as caught:
        wsdl_query(registry, BASE_QUERY + "&serviceCode=getPerson&serviceVersion=v1")
    assert caught.value.code == "ServiceFailed.InvalidXml"
