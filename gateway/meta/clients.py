"""``GET /listClients``: the members and subsystems of the instance. Pure.

JSON (snake_case, pr-meta C.1) when ``Accept`` asks for ``application/json``, otherwise XML
``xroad:clientList`` as service-metainfo.xsd defines it: one ``xroad:member`` per client with
its ``xroad:id`` (objectType ``MEMBER`` or ``SUBSYSTEM``), the member's ``name`` and, for a
subsystem that has a name of its own, ``subsystemName``. The optional query parameter
``xRoadInstance`` limits the list to that instance (the registry holds one, so another one
gives an empty list).
"""

from __future__ import annotations

from typing import Any

import orjson
from lxml import etree

from gateway.meta.common import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    MetaAnswer,
    append_identifier,
    client_json,
    parse_query,
    prefers_json,
    valid_part,
)
from gateway.soap.envelope import ID_NS, XROAD_NS
from registry import ClientEntry, Registry

__all__ = ["answer_list_clients"]


def _subsystem_name(entry: ClientEntry) -> str | None:
    # A subsystem without a name of its own carries its member's name (registry.build).
    if entry.id.subsystem is None or entry.name == entry.member_name:
        return None
    return entry.name


def _json(clients: list[ClientEntry]) -> bytes:
    members: list[dict[str, Any]] = []
    for entry in clients:
        item: dict[str, Any] = {"id": client_json(entry.id), "name": entry.member_name}
        subsystem_name = _subsystem_name(entry)
        if subsystem_name is not None:
            item["subsystem_name"] = subsystem_name
        members.append(item)
    return orjson.dumps({"member": members})


def _xml(clients: list[ClientEntry]) -> bytes:
    root = etree.Element(f"{{{XROAD_NS}}}clientList", nsmap={"xroad": XROAD_NS, "id": ID_NS})
    for entry in clients:
        member = etree.SubElement(root, f"{{{XROAD_NS}}}member")
        append_identifier(member, "id", entry.id)
        etree.SubElement(member, f"{{{XROAD_NS}}}name").text = entry.member_name
        subsystem_name = _subsystem_name(entry)
        if subsystem_name is not None:
            etree.SubElement(member, f"{{{XROAD_NS}}}subsystemName").text = subsystem_name
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def answer_list_clients(registry: Registry, query: str, accept: str | None) -> MetaAnswer:
    """Answer ``GET /listClients``; ``query`` is the raw query string, ``accept`` the header.

    Raises `MetaError` ``InvalidRequest`` for a malformed query and
    ``InvalidServiceIdentifier`` for a malformed ``xRoadInstance``.
    """
    params = parse_query(query)
    instance = params.get("xRoadInstance")
    clients = registry.all_clients()
    if instance is not None:
        wanted = valid_part(instance, "xRoadInstance")
        clients = [entry for entry in clients if entry.id.instance == wanted]
    if prefers_json(accept):
        return MetaAnswer(JSON_CONTENT_TYPE, _json(clients))
    return MetaAnswer(XML_CONTENT_TYPE, _xml(clients))
