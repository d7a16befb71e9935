"""Signature-wrapping attacks as corpus templates around a message signed at test time.

A wrapping attack rearranges a legitimately signed message, so each corpus file
``signature-wrapping-*.xml`` is the attacker's envelope with placeholders (namespace
``urn:obmin:attack``) for the pieces taken from a freshly signed request:

- ``<a:header-fields/>``: the X-Road header fields (``except="client"`` leaves one out);
  ``<a:field name="client"/>``: one of them;
- ``<a:security/>``: the whole wsse:Security header; ``<a:security-children/>``: its content;
  ``<a:timestamp/>``, ``<a:token/>``, ``<a:signature/>``: its parts;
- ``<a:body/>``: the signed soap:Body;
- ``a:same-id-as="body"`` on an element: give it the signed Body's wsu:Id.

Everything else in a template is literal: what the attacker adds.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from adapters.client import build_soap_request
from registry.identifiers import ClientId, ServiceId
from security import SigningKey, load_certificate, sign_soap

__all__ = ["SIGNED", "WrappingSigner", "add_signed_clients", "apply_template"]

ATTACK = "urn:obmin:attack"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
XROAD = "http://x-road.eu/xsd/xroad.xsd"

SIGNED = ClientId("EE", "BUSINESS", "consumer", "signed")
SERVICE = ServiceId(ClientId("EE", "BUSINESS", "producer"), "getState")


def add_signed_clients(registry: dict[str, Any]) -> None:
    """Registry tweak: two strict signing subsystems of the consumer, both allowed getState."""
    consumer = registry["members"][0]
    consumer["subsystems"] += [
        {"code": "signed", "auth": "signature", "signature_policy": "strict"},
        {"code": "signed2", "auth": "signature", "signature_policy": "strict"},
    ]
    for rule in registry["access"]:
        if rule["service"] == "getState" and rule["provider"] == "EE/BUSINESS/producer":
            rule["clients"] += [str(SIGNED), "EE/BUSINESS/consumer/signed2"]


@dataclass(frozen=True)
class WrappingSigner:
    """The consumer member's signing key (a certificate with serialNumber EE/BUSINESS/consumer)."""

    key: SigningKey
    cert_path: Any

    def signed_request(self) -> tuple[bytes, bytes]:
        """A strict-signed getState request, and the answer a provider would give to it."""
        message_id = f"wrap-{uuid.uuid4()}"
        body = etree.Element(f"{{{XROAD}}}getState", nsmap={"xroad": XROAD})
        body.text = "x"
        request = build_soap_request(SIGNED, SERVICE, body, message_id=message_id)
        signed = sign_soap(
            request,
            key=self.key,
            certificate=load_certificate(self.cert_path),
            now=datetime.now(UTC),
        )
        reply_body = etree.Element(f"{{{XROAD}}}getStateResponse", nsmap={"xroad": XROAD})
        reply_body.text = "state"
        answer = build_soap_request(SIGNED, SERVICE, reply_body, message_id=message_id)
        return etree.tostring(signed), etree.tostring(answer)


def _parts(signed: etree._Element) -> dict[str, Any]:
    header = signed.find(f"{{{SOAP}}}Header")
    body = signed.find(f"{{{SOAP}}}Body")
    assert header is not None and body is not None
    security = header.find(f"{{{WSSE}}}Security")
    assert security is not None
    fields = [c for c in header if isinstance(c.tag, str) and etree.QName(c).namespace != WSSE]
    return {
        "fields": fields,
        "security": security,
        "timestamp": security.find(f"{{{WSU}}}Timestamp"),
        "token": security.find(f"{{{WSSE}}}BinarySecurityToken"),
        "signature": security.find(f"{{{DS}}}Signature"),
        "body": body,
    }


def _expand(node: etree._Element, parts: dict[str, Any]) -> list[etree._Element]:
    name = etree.QName(node).localname
    if name == "header-fields":
        left_out = node.get("except")
        return [f for f in parts["fields"] if etree.QName(f).localname != left_out]
    if name == "field":
        return [f for f in parts["fields"] if etree.QName(f).localname == node.get("name")]
    if name == "security-children":
        return [c for c in parts["security"] if isinstance(c.tag, str)]
    if name in ("security", "timestamp", "token", "signature", "body"):
        return [parts[name]]
    raise ValueError(f"unknown attack placeholder <a:{name}>")


def apply_template(template: bytes, signed_message: bytes) -> bytes:
    """The attack message: ``template`` with its placeholders filled from ``signed_message``."""
    parts = _parts(etree.fromstring(signed_message))
    root = etree.fromstring(template)
    for node in list(root.iter(f"{{{ATTACK}}}*")):
        parent = node.getparent()
        assert parent is not None
        index = parent.index(node)
        parent.remove(node)
        for offset, piece in enumerate(_expand(node, parts)):
            parent.insert(index + offset, copy.deepcopy(piece))
    same_id = f"{{{ATTACK}}}same-id-as"
    for element in root.iter():
        if isinstance(element.tag, str) and element.get(same_id) == "body":
            del element.attrib[same_id]
            element.set(f"{{{WSU}}}Id", str(parts["body"].get(f"{{{WSU}}}Id")))
    etree.cleanup_namespaces(root)
    return etree.tostring(root)
