"""SOAP getWsdl: endpoint addresses replaced, hostile WSDL files refused, coded errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.meta import WSDL_ENDPOINT_ADDRESS, MetaAnswer, MetaError

from .conftest import (
    CLIENT,
    OTHER,
    PROVIDER,
    RegistryMaker,
    answer,
    content,
    response_of,
    soap_request,
)

XROAD = "http://x-road.eu/xsd/xroad.xsd"
SOAP11_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap/}address"
SOAP12_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap12/}address"


def get_wsdl(code: str | None, version: str | None = None) -> etree._Element:
    body = etree.Element(f"{{{XROAD}}}getWsdl")
    if code is not None:
        etree.SubElement(body, f"{{{XROAD}}}serviceCode").text = code
    if version is not None:
        etree.SubElement(body, f"{{{XROAD}}}serviceVersion").text = version
    return body


def wsdl_of(result: MetaAnswer) -> etree._Element:
    _, payload = response_of(result)
    (attachment,) = payload.attachments
    return etree.fromstring(attachment.content)


def test_get_wsdl_replaces_soap11_soap12_and_http_addresses(make_registry: RegistryMaker) -> None:
    registry = make_registry()
    request = soap_request(CLIENT, PROVIDER, "getWsdl", get_wsdl("getPerson", "v1"))
    wsdl = wsdl_of(answer(registry, request))
    addresses = [a.get("location") for a in wsdl.iter(SOAP11_ADDRESS, SOAP12_ADDRESS)]
    http = [a.get("location") for a in wsdl.iter("{http://schemas.xmlsoap.org/wsdl/http/}address")]
    assert addresses == [WSDL_ENDPOINT_ADDRESS] * 2
    assert http == [WSDL_ENDPOINT_ADDRESS]
    assert b"10.0.0.7" not in etree.tostring(wsdl)
    assert any(isinstance(node, etree._Comment) for node in wsdl)  # nothing else changed


def test_get_wsdl_is_not_access_controlled(make_registry: RegistryMaker) -> None:
    """As in X-Road, a service's description is public to authenticated members."""
    request = soap_request(OTHER, PROVIDER, "getWsdl", get_wsdl("getPerson", "v2"))
    assert wsdl_of(answer(make_registry(), request)).tag.endswith("definitions")


def _xroad_wsdls() -> list[Path]:
    root = Path(__file__).parents[2] / ".." / "shared" / "xroad-data" / "wsdl"
    return sorted(root.rglob("*.wsdl")) if root.is_dir() else []


@pytest.mark.parametrize("path", _xroad_wsdls(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_get_wsdl_of_x_road_wsdl_files(make_registry: RegistryMaker, path: Path) -> None:
    service = (
        "services:\n  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: described, "
        f"type: soap, url: 'http://127.0.0.1:1/', wsdl: '{path.resolve()}'}}\n"
    )
    registry = make_registry({"20-services.yaml": service, "30-access.yaml": None})
    request = soap_request(CLIENT, PROVIDER, "getWsdl", get_wsdl("described"))
    if path.name in ("xxe.wsdl", "invalid.wsdl"):  # an XXE vector, and a file that is not XML
        with pytest.raises(MetaError) as caught:
            answer(registry, request)
        assert caught.value.code == "ServiceFailed.InvalidXml"
        return
    original = etree.fromstring(path.read_bytes())
    wsdl = wsdl_of(answer(registry, request))
    before = list(original.iter(SOAP11_ADDRESS, SOAP12_ADDRESS))
    after = list(wsdl.iter(SOAP11_ADDRESS, SOAP12_ADDRESS))
    assert len(after) == len(before) >= 1
    assert {a.get("location") for a in after} == {WSDL_ENDPOINT_ADDRESS}
    for element in (*before, *after):
        element.attrib.pop("location", "")
    assert content(wsdl) == content(original)


def test_get_wsdl_refuses_entities_without_reading_them(
    make_registry: RegistryMaker, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY s SYSTEM "file://{secret}">'
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/">&s;&b;</wsdl:definitions>'
    )
    registry = make_registry({"docs/registry.wsdl": bomb})
    request = soap_request(CLIENT, PROVIDER, "getWsdl", get_wsdl("getPerson", "v1"))
    with pytest.raises(MetaError) as caught:
        answer(registry, request)
    assert caught.value.code == "ServiceFailed.InvalidXml"
    assert "TOP-SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (get_wsdl("getPerson"), "UnknownService"),  # registered only with versions
        (get_wsdl("getPerson", "v9"), "UnknownService"),
        (get_wsdl("listPersons"), "UnknownService"),  # registered without a WSDL
        (get_wsdl("persons"), "ServiceType"),
        (get_wsdl(None), "InvalidRequest"),
        (get_wsdl("  "), "InvalidRequest"),
        (get_wsdl("get Person"), "InvalidServiceIdentifier"),
        (get_wsdl("getPerson", "v1%2F"), "InvalidServiceIdentifier"),
    ],
)
def test_get_wsdl_errors(make_registry: RegistryMaker, body: etree._Element, code: str) -> None:
    request = soap_request(CLIENT, PROVIDER, "getWsdl", body)
    with pytest.raises(MetaError) as caught:
        answer(make_registry(), request)
    assert caught.value.code == code


def test_get_wsdl_with_two_service_codes_is_refused(make_registry: RegistryMaker) -> None:
    body = get_wsdl("getPerson", "v1")
    etree.SubElement(body, f"{{{XROAD}}}serviceCode").text = "listPersons"
    with pytest.raises(MetaError) as caught:
        answer(make_registry(), soap_request(CLIENT, PROVIDER, "getWsdl", body))
    assert caught.value.code == "InvalidRequest"
