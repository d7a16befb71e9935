"""X-Road REST metaservices: listMethods, allowedMethods, getOpenAPI. Pure.

``GET /r1/{INSTANCE}/{CLASS}/{MEMBER}/{SUBSYSTEM}/listMethods`` lists the provider's REST
services (types ``rest`` and ``openapi``) as snake_case JSON, one object per service with its
``endpoint_list`` (pr-mrest annex B.1). ``allowedMethods`` lists those the client holds a right
on, each with the endpoints that right covers (B.2). ``getOpenAPI?serviceCode=X`` returns the
service's OpenAPI document with server URLs reduced to their paths.

Where the endpoints come from: a service with an OpenAPI document lists the document's
operations; one without lists none, as X-Road lists no endpoints for a REST service whose only
endpoint is the implicit "everything". In allowedMethods a document's operation is listed when
the client may call it (`Registry.is_allowed` with that method and path); a service without a
document lists the endpoint rules its grants name, so a client can see what it may call.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.meta.common import (
    JSON_CONTENT_TYPE,
    DocumentReader,
    MetaAnswer,
    MetaError,
    load_document,
    parse_query,
    registered_provider,
    service_json,
    valid_part,
)
from gateway.meta.openapi import (
    anonymise_openapi,
    load_openapi,
    openapi_endpoints,
    render_openapi,
)
from gateway.soap.xml import XmlLimits
from registry import ClientId, Registry, ServiceEntry, ServiceId

__all__ = ["REST_METASERVICES", "answer_rest_metaservice", "is_rest_metaservice"]

REST_METASERVICES = frozenset({"listMethods", "allowedMethods", "getOpenAPI"})


def is_rest_metaservice(service_code: str) -> bool:
    """True for the service codes obmin answers itself under ``/r1/.../{code}`` (GET only)."""
    return service_code in REST_METASERVICES


def _openapi(
    entry: ServiceEntry, read_document: DocumentReader, limits: XmlLimits
) -> tuple[dict[str, Any], bool] | None:
    path = entry.openapi_path
    if path is None:
        return None
    what = f"the OpenAPI document of service {entry.id}"
    data = load_document(read_document, path, what)
    is_json = path.suffix.lower() == ".json"
    return load_openapi(data, is_json=is_json, max_bytes=limits.max_bytes, what=what), is_json


def _endpoints(
    entry: ServiceEntry, read_document: DocumentReader, limits: XmlLimits
) -> list[tuple[str, str]]:
    loaded = _openapi(entry, read_document, limits)
    return [] if loaded is None else openapi_endpoints(loaded[0])


def _allowed_endpoints(
    registry: Registry,
    client: ClientId,
    entry: ServiceEntry,
    endpoints: list[tuple[str, str]],
) -> list[tuple[str, str]]:
    if entry.openapi_path is not None:
        return [
            (method, path)
            for method, path in endpoints
            if registry.is_allowed(client, entry.id, method, path)
        ]
    rules: list[tuple[str, str]] = []
    for grant in registry.access.grants(client, (entry.id.provider, entry.id.service_code)):
        for rule in grant.endpoints:
            if (rule.method, rule.glob) not in rules:
                rules.append((rule.method, rule.glob))
    return rules


def _service_list(services: list[tuple[ServiceEntry, list[tuple[str, str]]]]) -> MetaAnswer:
    listed = [
        {
            **service_json(entry),
            "endpoint_list": [{"method": method, "path": path} for method, path in endpoints],
        }
        for entry, endpoints in services
    ]
    return MetaAnswer(JSON_CONTENT_TYPE, orjson.dumps({"service": listed}))


def _rest_services(registry: Registry, provider: ClientId) -> list[ServiceEntry]:
    return [e for e in registry.services_of(provider) if e.type in ("rest", "openapi")]


def _open_api_service(registry: Registry, provider: ClientId, query: str) -> ServiceEntry:
    params = parse_query(query)
    code = params.get("serviceCode")
    if code is None:
        raise MetaError("query parameter serviceCode is required", code="InvalidRequest")
    code = valid_part(code, "serviceCode")
    version = params.get("serviceVersion")
    if version is not None:
        service = ServiceId(provider, code, valid_part(version, "serviceVersion"))
        entry = registry.find_service(service)
    else:
        service = ServiceId(provider, code)
        entry = registry.find_service(service)
        versions = registry.code_services.get((provider, code), ())
        if entry is None and len(versions) > 1:
            listed = ", ".join(sorted(v.id.service_version or "-" for v in versions))
            raise MetaError(
                f"service {service} has several versions ({listed}); name one in serviceVersion",
                code="InvalidRequest",
            )
        if entry is None and versions:
            entry = versions[0]
    if entry is None:
        raise MetaError(f"service {service} is not registered", code="UnknownService")
    if entry.type == "soap":
        raise MetaError(
            f"service {entry.id} is a SOAP service and has no OpenAPI document",
            code="ServiceType",
        )
    return entry


def answer_rest_metaservice(
    registry: Registry,
    client: ClientId,
    provider: ClientId,
    name: str,
    query: str,
    *,
    read_document: DocumentReader,
    limits: XmlLimits,
) -> MetaAnswer:
    """Answer a REST metaservice ``name`` of ``provider`` for the authenticated ``client``.

    ``query`` is the raw query string (still percent-encoded). Raises `MetaError`:
    ``UnknownService`` for an unregistered provider, service or missing document,
    ``InvalidRequest`` for a missing or repeated ``serviceCode``, ``ServiceType`` for a SOAP
    service, ``ServiceFailed.InvalidMessage`` for an unreadable OpenAPI document.
    """
    if not is_rest_metaservice(name):
        raise MetaError(f"{name} is not a REST metaservice", code="InternalError")
    registered_provider(registry, provider)
    if name == "listMethods":
        services = _rest_services(registry, provider)
        return _service_list([(e, _endpoints(e, read_document, limits)) for e in services])
    if name == "allowedMethods":
        allowed: list[tuple[ServiceEntry, list[tuple[str, str]]]] = []
        for entry in _rest_services(registry, provider):
            if not registry.access.grants(client, (provider, entry.id.service_code)):
                continue
            endpoints = _endpoints(entry, read_document, limits)
            allowed.append((entry, _allowed_endpoints(registry, client, entry, endpoints)))
        return _service_list(allowed)
    entry = _open_api_service(registry, provider, query)
    loaded = _openapi(entry, read_document, limits)
    if loaded is None:
        raise MetaError(
            f"no OpenAPI document is registered for service {entry.id}", code="UnknownService"
        )
    document, is_json = loaded
    body, content_type = render_openapi(anonymise_openapi(document), is_json=is_json)
    return MetaAnswer(content_type, body)
