"""Metaservice test fixtures: registries written into ``tmp_path``, requests built as clients
build them, the X-Road metadata schema loaded from ``xroad-data`` without network access."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.client import build_soap_request
from gateway.meta import MetaAnswer, answer_soap_metaservice
from gateway.soap import (
    SoapEnvelope,
    SoapPayload,
    XmlLimits,
    parse_envelope,
    parse_untrusted_xml,
    split_soap_payload,
)
from registry import ClientId, Registry, ServiceId, load_registry

XROAD_DATA = Path(__file__).parents[2] / ".." / "shared" / "xroad-data"
LIMITS = XmlLimits()

CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
OTHER = ClientId("SEVDEIR-TEST", "GOV", "12345678", "OTHER")
PROVIDER = ClientId("SEVDEIR-TEST", "GOV", "87654321", "REGISTRY")

# A WSDL with SOAP 1.1, SOAP 1.2 and HTTP bindings, each naming the provider's real address.
WSDL = b"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:http="http://schemas.xmlsoap.org/wsdl/http/"
    xmlns:tns="http://registry.example/producer" name="registry"
    targetNamespace="http://registry.example/producer">
  <!-- internal deployment notes stay as they are -->
  <wsdl:service name="registryService">
    <wsdl:port binding="tns:soap11" name="p11">
      <soap:address location="https://10.0.0.7:8443/internal/soap"/>
    </wsdl:port>
    <wsdl:port binding="tns:soap12" name="p12">
      <soap12:address location="https://10.0.0.7:8443/internal/soap12"/>
    </wsdl:port>
    <wsdl:port binding="tns:http" name="ph">
      <http:address location="http://10.0.0.7/internal/http"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""

PETSTORE_YAML = """\
openapi: 3.0.3
info: {title: Persons, version: 1.0.0}
servers:
  - url: https://internal.registry.example:8443/api/v3
  - url: "{scheme}://{host}/api/{stage}"
    variables:
      scheme: {default: https}
      host: {default: db7.internal}
      stage: {default: prod}
paths:
  /pet:
    put: {responses: {'200': {description: ok}}}
    post: {responses: {'200': {description: ok}}}
  /pet/findByStatus:
    get: {responses: {'200': {description: ok}}}
  /pet/{petId}:
    servers:
      - url: http://10.1.2.3:9000/special
    parameters: []
    get: {responses: {'200': {description: ok}}}
    post: {responses: {'200': {description: ok}}}
    delete: {responses: {'200': {description: ok}}}
  /pet/{petId}/uploadImage:
    post: {responses: {'200': {description: ok}}}
  /store/order/{orderId}:
    get:
      servers: [{url: 'https://orders.internal/v1'}]
      responses: {'200': {description: ok}}
"""

BASE: dict[str, str] = {
    "00-instance.yaml": "instance: SEVDEIR-TEST\n",
    "10-members.yaml": """\
members:
  - id: SEVDEIR-TEST/GOV/12345678
    name: Ministry of Social Policy
    subsystems:
      - code: CLIENT
        name: Benefits
      - code: OTHER
  - id: SEVDEIR-TEST/GOV/87654321
    name: State Registry Service
    subsystems:
      - code: REGISTRY
        name: Person Registry
""",
    "20-services.yaml": """\
services:
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: getPerson, version: v1, type: soap,
     url: 'http://127.0.0.1:8090/soap', wsdl: docs/registry.wsdl}
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: getPerson, version: v2, type: soap,
     url: 'http://127.0.0.1:8090/soap', wsdl: docs/registry.wsdl}
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: listPersons, type: soap,
     url: 'http://127.0.0.1:8090/soap'}
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: persons, type: rest,
     url: 'http://127.0.0.1:8090/rest'}
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: petstore, type: openapi,
     url: 'http://127.0.0.1:8090/v2', openapi: docs/petstore.yaml}
""",
    "30-access.yaml": """\
access:
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, service: getPerson,
     clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]}
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: persons
    clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]
    endpoints: [{method: GET, path: '/persons/*'}, {method: POST, path: /persons}]
  - provider: SEVDEIR-TEST/GOV/87654321/REGISTRY
    service: petstore
    clients: [SEVDEIR-TEST/GOV/12345678/CLIENT]
    endpoints: [{method: GET, path: '/pet/**'}]
""",
    "docs/petstore.yaml": PETSTORE_YAML,
}

RegistryMaker = Callable[..., Registry]


@pytest.fixture
def make_registry(tmp_path: Path) -> RegistryMaker:
    """Write `BASE` changed by ``files`` (None removes one) into a new directory and load it."""
    counter = iter(range(1_000_000))

    def make(files: dict[str, str | bytes | None] | None = None) -> Registry:
        directory = tmp_path / f"registry{next(counter)}"
        (directory / "docs").mkdir(parents=True)
        (directory / "docs" / "registry.wsdl").write_bytes(WSDL)
        for name, content in {**BASE, **(files or {})}.items():
            if content is None:
                continue
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return load_registry(directory)

    return make


@pytest.fixture
def xroad_data() -> Path:
    """The X-Road test data directory, or skip."""
    if not XROAD_DATA.is_dir():
        pytest.skip(f"X-Road test data not found at {XROAD_DATA.resolve()}")
    return XROAD_DATA


class _LocalOnly(etree.Resolver):
    """Resolves schema imports to files of one directory; anything else is refused."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory.resolve()

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # type: ignore[override]
        path = Path(system_url.removeprefix("file://")).resolve()
        if path.parent != self.directory or not path.is_file():
            raise ValueError(f"schema import outside {self.directory}: {system_url}")
        return self.resolve_filename(str(path), context)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def metainfo_schema() -> etree.XMLSchema:
    """service-metainfo.xsd (clientList, listMethodsResponse ...), imports resolved locally."""
    xsd_dir = XROAD_DATA / "xsd"
    if not (xsd_dir / "service-metainfo.xsd").is_file():
        pytest.skip(f"X-Road schemas not found under {xsd_dir.resolve()}")
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(_LocalOnly(xsd_dir))
    document = etree.parse(str(xsd_dir / "service-metainfo.xsd"), parser)
    return etree.XMLSchema(document)


def envelope_of(data: bytes) -> SoapEnvelope:
    """Parse request bytes as the pipeline's stage 1 does."""
    return parse_envelope(parse_untrusted_xml(data, LIMITS))


def soap_request(
    client: ClientId, provider: ClientId, code: str, body: etree._Element | None = None
) -> SoapEnvelope:
    """A metaservice request as an X-Road client sends it, parsed as the pipeline parses it."""
    element = (
        body if body is not None else etree.Element(f"{{http://x-road.eu/xsd/xroad.xsd}}{code}")
    )
    root = build_soap_request(
        client, ServiceId(provider, code), element, message_id="m-1", user_id="EE:PIN:1"
    )
    return envelope_of(etree.tostring(root))


def shape(element: etree._Element) -> tuple[Any, ...]:
    """An element's structure: qualified tag, attribute names, children; no values."""
    children = tuple(shape(child) for child in element if isinstance(child.tag, str))
    return (element.tag, tuple(sorted(element.attrib)), children)


def content(element: etree._Element, skip: frozenset[str] = frozenset()) -> tuple[Any, ...]:
    """Structure and values (whitespace-trimmed text), without the children named in ``skip``."""
    children = tuple(
        content(child, skip)
        for child in element
        if isinstance(child.tag, str) and etree.QName(child).localname not in skip
    )
    text = (element.text or "").strip() if not children else ""
    return (element.tag, tuple(sorted(element.attrib.items())), text, children)


def answer(registry: Registry, request: SoapEnvelope) -> MetaAnswer:
    """Answer a SOAP metaservice request for the client its header names."""
    assert request.header is not None
    return answer_soap_metaservice(
        registry, request, request.header.client, read_document=Path.read_bytes, limits=LIMITS
    )


def response_of(result: MetaAnswer) -> tuple[SoapEnvelope, SoapPayload]:
    """Parse an answer the way stage 7 parses a provider's reply."""
    payload = split_soap_payload(result.content_type, result.body)
    return parse_envelope(parse_untrusted_xml(payload.soap, LIMITS), response=True), payload
