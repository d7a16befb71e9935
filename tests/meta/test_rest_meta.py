"""REST metaservices against the PR-MREST examples and the access rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.meta import MetaAnswer, MetaError, answer_rest_metaservice, is_rest_metaservice
from gateway.meta.openapi import anonymise_openapi
from registry import ClientId, Registry

from .conftest import CLIENT, LIMITS, OTHER, PETSTORE_YAML, PROVIDER, RegistryMaker

PETSTORE_ENDPOINTS = [
    {"method": "PUT", "path": "/pet"},
    {"method": "POST", "path": "/pet"},
    {"method": "GET", "path": "/pet/findByStatus"},
    {"method": "GET", "path": "/pet/*"},
    {"method": "POST", "path": "/pet/*"},
    {"method": "DELETE", "path": "/pet/*"},
    {"method": "POST", "path": "/pet/*/uploadImage"},
    {"method": "GET", "path": "/store/order/*"},
]


def call(registry: Registry, name: str, query: str = "", client: ClientId = CLIENT) -> MetaAnswer:
    return answer_rest_metaservice(
        registry, client, PROVIDER, name, query, read_document=Path.read_bytes, limits=LIMITS
    )


def services(result: MetaAnswer) -> dict[str, dict[str, Any]]:
    assert result.content_type.startswith("application/json")
    document = orjson.loads(result.body)
    assert list(document) == ["service"]
    return {service["service_code"]: service for service in document["service"]}


def example(xroad_data: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(
        (xroad_data / "spec-examples" / "pr-mrest" / name).read_bytes()
    )
    return loaded


def test_list_methods_has_the_b1_shape(make_registry: RegistryMaker, xroad_data: Path) -> None:
    listed = services(call(make_registry(), "listMethods"))
    assert set(listed) == {"persons", "petstore"}  # REST services only, none of the SOAP ones
    b1 = example(xroad_data, "pr-mrest_B.1_listMethods-response.json")
    by_type = {s["service_type"]: s for s in b1["service"]}
    for ours in listed.values():
        theirs = by_type[ours["service_type"]]
        assert list(ours) == list(theirs)  # same fields, same order
        for endpoint in ours["endpoint_list"]:
            assert list(endpoint) == list(theirs["endpoint_list"][0])
    petstore = listed["petstore"]
    assert petstore["service_type"] == "OPENAPI"
    assert (petstore["xroad_instance"], petstore["member_class"], petstore["member_code"]) == (
        "SEVDEIR-TEST",
        "GOV",
        "87654321",
    )
    assert petstore["subsystem_code"] == "REGISTRY" and petstore["object_type"] == "SERVICE"
    assert petstore["endpoint_list"] == PETSTORE_ENDPOINTS
    assert listed["persons"]["service_type"] == "REST"
    assert listed["persons"]["endpoint_list"] == []  # no document: only the implicit "all"


def test_list_methods_is_the_same_for_every_client(make_registry: RegistryMaker) -> None:
    registry = make_registry()
    assert call(registry, "listMethods").body == call(registry, "listMethods", client=OTHER).body


def test_allowed_methods_has_the_b2_shape_and_follows_endpoint_rights(
    make_registry: RegistryMaker, xroad_data: Path
) -> None:
    registry = make_registry()
    allowed = services(call(registry, "allowedMethods"))
    b2 = example(xroad_data, "pr-mrest_B.2_allowedMethods-response.json")
    assert {list(s).__repr__() for s in allowed.values()} == {
        list(s).__repr__() for s in b2["service"]
    }
    # GET /pet/** covers the document's GET operations under /pet, nothing else.
    assert allowed["petstore"]["endpoint_list"] == [
        {"method": "GET", "path": "/pet/findByStatus"},
        {"method": "GET", "path": "/pet/*"},
    ]
    # Without a document, the rules granted are what the client may call.
    assert allowed["persons"]["endpoint_list"] == [
        {"method": "GET", "path": "/persons/*"},
        {"method": "POST", "path": "/persons"},
    ]
    assert services(call(registry, "allowedMethods", client=OTHER)) == {}


def test_allowed_methods_grant_and_revoke(make_registry: RegistryMaker) -> None:
    whole = make_registry(
        {
            "30-access.yaml": """\
access:
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, service: petstore, groups: [readers]}
""",
            "40-groups.yaml": "groups:\n  - {code: readers, members: "
            "[SEVDEIR-TEST/GOV/12345678/OTHER]}\n",
        }
    )
    assert services(call(whole, "allowedMethods")) == {}
    granted = services(call(whole, "allowedMethods", client=OTHER))
    assert list(granted) == ["petstore"]
    assert granted["petstore"]["endpoint_list"] == PETSTORE_ENDPOINTS
    for entry in whole.services_of(PROVIDER):
        for endpoint in granted.get(entry.id.service_code, {}).get("endpoint_list", []):
            assert whole.is_allowed(OTHER, entry.id, endpoint["method"], endpoint["path"])


def test_get_openapi_reduces_server_urls_to_paths(make_registry: RegistryMaker) -> None:
    result = call(make_registry(), "getOpenAPI", "serviceCode=petstore")
    assert result.content_type.startswith("text/yaml")
    document = yaml.safe_load(result.body)
    assert document["servers"] == [{"url": "/api/v3"}, {"url": "/api/{stage}", "variables": {
        "stage": {"default": "prod"}}}]  # fmt: skip
    assert document["paths"]["/pet/{petId}"]["servers"] == [{"url": "/special"}]
    order = document["paths"]["/store/order/{orderId}"]["get"]
    assert order["servers"] == [{"url": "/v1"}]
    text = result.body.decode()
    for leak in ("internal", "10.1.2.3", "8443", "db7"):
        assert leak not in text
    original = yaml.safe_load(PETSTORE_YAML)
    for value in (document, original):
        value.pop("servers")
        value["paths"]["/pet/{petId}"].pop("servers")
        value["paths"]["/store/order/{orderId}"]["get"].pop("servers")
    assert document == original  # nothing else changed


def test_get_openapi_of_the_b3_document_keeps_it_whole(
    make_registry: RegistryMaker, xroad_data: Path, tmp_path: Path
) -> None:
    b3 = xroad_data / "spec-examples" / "pr-mrest" / "pr-mrest_B.3_getOpenAPI-response.yaml"
    firms_json = tmp_path / "firms.json"
    firms_json.write_bytes(orjson.dumps(yaml.safe_load(b3.read_bytes())))
    services_yaml = f"""\
services:
  - {{provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: listFirms, type: openapi,
     url: 'https://firms.internal/', openapi: '{b3.resolve()}'}}
  - {{provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: firmsJson, type: rest,
     url: 'https://firms.internal/', openapi: '{firms_json}'}}
"""
    registry = make_registry({"20-services.yaml": services_yaml, "30-access.yaml": None})
    expected = yaml.safe_load(b3.read_bytes())
    expected["servers"] = [{"url": "/"}]
    from_yaml = call(registry, "getOpenAPI", "serviceCode=listFirms")
    assert yaml.safe_load(from_yaml.body) == expected
    from_json = call(registry, "getOpenAPI", "serviceCode=firmsJson")
    assert from_json.content_type.startswith("application/json")
    assert orjson.loads(from_json.body) == expected
    listed = services(call(registry, "listMethods"))
    assert listed["listFirms"]["endpoint_list"] == [{"method": "GET", "path": "/firms"}]


def test_get_openapi_version_choice(make_registry: RegistryMaker) -> None:
    services_yaml = """\
services:
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: petstore, version: v1, type: openapi,
     url: 'http://127.0.0.1:1/', openapi: docs/petstore.yaml}
  - {provider: SEVDEIR-TEST/GOV/87654321/REGISTRY, code: petstore, version: v2, type: openapi,
     url: 'http://127.0.0.1:1/', openapi: docs/v2.json}
"""
    v2 = orjson.dumps({"openapi": "3.1.0", "info": {"title": "v2", "version": "2"}, "paths": {}})
    registry = make_registry(
        {"20-services.yaml": services_yaml, "docs/v2.json": v2, "30-access.yaml": None}
    )
    with pytest.raises(MetaError) as caught:
        call(registry, "getOpenAPI", "serviceCode=petstore")
    assert caught.value.code == "InvalidRequest"
    chosen = call(registry, "getOpenAPI", "serviceCode=petstore&serviceVersion=v2")
    assert orjson.loads(chosen.body)["info"]["title"] == "v2"
    only_v1 = "\n".join(services_yaml.splitlines()[:3]) + "\n"
    single = make_registry({"20-services.yaml": only_v1, "30-access.yaml": None})
    assert call(single, "getOpenAPI", "serviceCode=petstore").content_type.startswith("text/yaml")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "InvalidRequest"),
        ("serviceCode=", "InvalidRequest"),
        ("serviceCode=petstore&serviceCode=persons", "InvalidRequest"),
        ("serviceCode=%FF", "InvalidRequest"),
        ("serviceCode=pet%20store", "InvalidServiceIdentifier"),
        ("serviceCode=nothing", "UnknownService"),
        ("serviceCode=persons", "UnknownService"),  # a REST service without a document
        ("serviceCode=listPersons", "ServiceType"),
    ],
)
def test_get_openapi_errors(make_registry: RegistryMaker, query: str, code: str) -> None:
    with pytest.raises(MetaError) as caught:
        call(make_registry(), "getOpenAPI", query)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ("base: &b {a: 1}\nopenapi: 3.0.0\nx: *b\n", "ServiceFailed.InvalidMessage"),  # aliases
        ("openapi: [unclosed\n", "ServiceFailed.InvalidMessage"),
        ("- a list\n", "ServiceFailed.InvalidMessage"),
        ("openapi: 2.0\npaths: {}\n", "ServiceFailed.InvalidMessage"),
        ("openapi: 3.0.0\n" + "#" * (LIMITS.max_bytes + 1), "ServiceFailed.MessageTooLarge"),
    ],
)
def test_broken_openapi_documents_are_coded_errors(
    make_registry: RegistryMaker, document: str, code: str
) -> None:
    registry = make_registry({"docs/petstore.yaml": document})
    for name, query in (("getOpenAPI", "serviceCode=petstore"), ("listMethods", "")):
        with pytest.raises(MetaError) as caught:
            call(registry, name, query)
        assert caught.value.code == code


def test_swagger_2_loses_host_and_schemes(make_registry: RegistryMaker) -> None:
    swagger = (
        "swagger: '2.0'\nhost: api.internal:8443\nschemes: [https]\nbasePath: /v2\n"
        "info: {title: t, version: '1'}\npaths:\n  /pets/{id}: {get: {responses: {}}}\n"
    )
    registry = make_registry({"docs/petstore.yaml": swagger})
    document = yaml.safe_load(call(registry, "getOpenAPI", "serviceCode=petstore").body)
    assert "host" not in document and "schemes" not in document
    assert document["basePath"] == "/v2"
    listed = services(call(registry, "listMethods"))
    assert listed["petstore"]["endpoint_list"] == [{"method": "GET", "path": "/pets/*"}]


def test_unregistered_provider_and_names(make_registry: RegistryMaker) -> None:
    registry = make_registry()
    with pytest.raises(MetaError) as caught:
        answer_rest_metaservice(
            registry,
            CLIENT,
            ClientId("SEVDEIR-TEST", "GOV", "00000000", "X"),
            "listMethods",
            "",
            read_document=Path.read_bytes,
            limits=LIMITS,
        )
    assert caught.value.code == "UnknownService"
    with pytest.raises(MetaError) as caught:
        call(registry, "getWsdl")
    assert caught.value.code == "InternalError"
    assert all(is_rest_metaservice(c) for c in ("listMethods", "allowedMethods", "getOpenAPI"))
    assert not is_rest_metaservice("getWsdl")


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@given(
    scheme=st.sampled_from(["http", "https", "{scheme}"]),
    host=st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    port=st.none() | st.integers(1, 65535),
    path=st.lists(_LABEL | st.just("{v}"), max_size=4).map(lambda p: "/" + "/".join(p)),
)
def test_reduced_server_urls_keep_the_path_and_nothing_else(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    authority = host if port is None else f"{host}:{port}"
    document = {
        "openapi": "3.0.0",
        "servers": [{"url": f"{scheme}://{authority}{path}?q=1", "variables": {"v": {}, "h": {}}}],
    }
    (server,) = anonymise_openapi(document)["servers"]
    assert server["url"] == path
    assert server.get("variables") == ({"v": {}} if "{v}" in path else None)
