"""What every metaservice shares: the answer, the error, documents, queries, identifiers. Pure.

Metaservices are answered by obmin itself, from the registry snapshot, instead of being
forwarded. The functions of this package do no I/O: the service documents they need (WSDL,
OpenAPI) come through a `DocumentReader` the caller passes in, so the caller decides where
the reading happens (a worker thread, a cache).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from lxml import etree

from gateway.errors import GatewayError
from gateway.soap.envelope import ID_NS, XROAD_NS
from registry import ClientId, InvalidIdentifier, Registry, ServiceEntry, ServiceId
from registry.identifiers import check_part

__all__ = [
    "JSON_CONTENT_TYPE",
    "XML_CONTENT_TYPE",
    "DocumentReader",
    "MetaAnswer",
    "MetaError",
    "append_identifier",
    "client_json",
    "load_document",
    "parse_query",
    "prefers_json",
    "registered_provider",
    "service_json",
    "valid_part",
]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"

DocumentReader = Callable[[Path], bytes]
"""Reads a service document (WSDL, OpenAPI) named by the registry; ``Path.read_bytes`` will do."""


class MetaError(GatewayError):
    """A metaservice request cannot be answered; ``code`` names why.

    Codes used: ``InvalidRequest`` (missing or malformed parameter), ``InvalidServiceIdentifier``,
    ``UnknownService``, ``ServiceType`` (a WSDL asked of a REST service, or the reverse),
    ``ServiceFailed.InvalidXml`` (the registered WSDL is not acceptable XML: DTD, entities,
    not well-formed), ``ServiceFailed.InvalidMessage`` (the registered OpenAPI document cannot be
    read), ``ServiceFailed.MessageTooLarge`` and ``InternalError`` (a document vanished).
    """


@dataclass(frozen=True, slots=True)
class MetaAnswer:
    """A metaservice's answer: what to send back, before any signature or audit."""

    content_type: str
    body: bytes
    status: int = 200


def load_document(reader: DocumentReader, path: Path, what: str) -> bytes:
    """The bytes of a registered document; a document that cannot be read is our fault."""
    try:
        return reader(path)
    except OSError as exc:
        raise MetaError(f"{what} cannot be read", code="InternalError") from exc


def parse_query(query: str) -> dict[str, str]:
    """Parameters of a raw (still percent-encoded) query string, each name at most once.

    Blank values count as absent. A repeated name or a malformed escape is refused: which of
    two values is meant is not ours to guess.
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise MetaError("the query string is not valid", code="InvalidRequest") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise MetaError(f"query parameter {name} is given twice", code="InvalidRequest")
        params[name] = value
    return {name: value for name, value in params.items() if value.strip()}


def valid_part(value: str, what: str) -> str:
    """An identifier part from a request, checked; `MetaError` with ``InvalidServiceIdentifier``."""
    try:
        return check_part(value, what)
    except InvalidIdentifier as exc:
        raise MetaError(str(exc), code="InvalidServiceIdentifier") from exc


def prefers_json(accept: str | None) -> bool:
    """True when ``Accept`` asks for ``application/json`` at least as much as for XML."""
    if not accept:
        return False
    best_json = best_xml = 0.0
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if media == "application/json":
            best_json = max(best_json, quality)
        elif media in ("application/xml", "text/xml"):
            best_xml = max(best_xml, quality)
    return best_json > 0 and best_json >= best_xml


def registered_provider(registry: Registry, provider: ClientId) -> None:
    """Refuse a metaservice call addressed to a provider the registry does not know."""
    if registry.find_client(provider) is None:
        raise MetaError(f"provider {provider} is not registered", code="UnknownService")


def _client_parts(client: ClientId) -> list[tuple[str, str | None]]:
    return [
        ("xRoadInstance", client.instance),
        ("memberClass", client.member_class),
        ("memberCode", client.member_code),
        ("subsystemCode", client.subsystem),
    ]


def append_identifier(
    parent: etree._Element, name: str, identifier: ClientId | ServiceId
) -> etree._Element:
    """Append ``xroad:{name}`` holding an X-Road identifier (identifiers.xsd) to ``parent``."""
    if isinstance(identifier, ServiceId):
        object_type = "SERVICE"
        parts = [
            *_client_parts(identifier.provider),
            ("serviceCode", identifier.service_code),
            ("serviceVersion", identifier.service_version),
        ]
    else:
        object_type = identifier.object_type
        parts = _client_parts(identifier)
    element = etree.SubElement(parent, f"{{{XROAD_NS}}}{name}")
    element.set(f"{{{ID_NS}}}objectType", object_type)
    for part, value in parts:
        if value is not None:
            etree.SubElement(element, f"{{{ID_NS}}}{part}").text = value
    return element


def client_json(client: ClientId) -> dict[str, str]:
    """A client identifier as the JSON ``listClients`` answer spells it (snake_case)."""
    result = {"member_class": client.member_class, "member_code": client.member_code}
    if client.subsystem is not None:
        result["subsystem_code"] = client.subsystem
    result["object_type"] = client.object_type
    result["xroad_instance"] = client.instance
    return result


def service_json(entry: ServiceEntry) -> dict[str, Any]:
    """A REST service as the REST ``listMethods`` answer spells it, without its endpoints."""
    service = entry.id
    provider = service.provider
    result: dict[str, Any] = {
        "member_class": provider.member_class,
        "member_code": provider.member_code,
        "object_type": "SERVICE",
        "service_code": service.service_code,
    }
    if service.service_version is not None:
        result["service_version"] = service.service_version
    result["service_type"] = "OPENAPI" if entry.type == "openapi" else "REST"
    if provider.subsystem is not None:
        result["subsystem_code"] = provider.subsystem
    result["xroad_instance"] = provider.instance
    return result
