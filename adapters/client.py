"""Client SDK, first cut: build, sign and send X-Road SOAP requests; verify signed answers.

A departmental system uses `XRoadSoapClient` to call a service through obmin: it builds the
X-Road 4.0 envelope (`build_soap_request` is pure), signs it with the ``strict`` profile of
SPEC 5.1 and checks that the answer is signed by the gateway and carries the ``requestHash``
of exactly the request it sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from cryptography.x509 import Certificate
from lxml import etree

from gateway.soap.envelope import ID_NS, SOAP_ENV_NS, XROAD_NS, SoapEnvelope, parse_envelope
from gateway.soap.render import request_hash
from gateway.soap.xml import XmlLimits, parse_untrusted_xml
from registry.identifiers import ClientId, ServiceId
from security import SigningKey, TrustStore, VerifiedSoap, sign_soap, verify_soap_signature

__all__ = ["SoapAnswer", "XRoadSoapClient", "build_soap_request"]


def _identifier(
    parent: etree._Element, tag: str, object_type: str, parts: list[tuple[str, str | None]]
) -> None:
    element = etree.SubElement(parent, f"{{{XROAD_NS}}}{tag}")
    element.set(f"{{{ID_NS}}}objectType", object_type)
    for name, value in parts:
        if value is not None:
            etree.SubElement(element, f"{{{ID_NS}}}{name}").text = value


def build_soap_request(
    client: ClientId,
    service: ServiceId,
    body: etree._Element,
    *,
    message_id: str | None = None,
    user_id: str | None = None,
    issue: str | None = None,
) -> etree._Element:
    """An X-Road 4.0 request envelope with ``body`` as the single Body element."""
    envelope = etree.Element(
        f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV_NS, "xrd": XROAD_NS, "id": ID_NS}
    )
    header = etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Header")
    _identifier(
        header,
        "client",
        client.object_type,
        [
            ("xRoadInstance", client.instance),
            ("memberClass", client.member_class),
            ("memberCode", client.member_code),
            ("subsystemCode", client.subsystem),
        ],
    )
    provider = service.provider
    _identifier(
        header,
        "service",
        "SERVICE",
        [
            ("xRoadInstance", provider.instance),
            ("memberClass", provider.member_class),
            ("memberCode", provider.member_code),
            ("subsystemCode", provider.subsystem),
            ("serviceCode", service.service_code),
            ("serviceVersion", service.service_version),
        ],
    )
    etree.SubElement(header, f"{{{XROAD_NS}}}id").text = message_id or str(uuid.uuid4())
    if user_id is not None:
        etree.SubElement(header, f"{{{XROAD_NS}}}userId").text = user_id
    if issue is not None:
        etree.SubElement(header, f"{{{XROAD_NS}}}issue").text = issue
    etree.SubElement(header, f"{{{XROAD_NS}}}protocolVersion").text = "4.0"
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body").append(body)
    return envelope


class AnswerRejected(Exception):
    """The gateway's answer is not signed by the gateway or not for our request."""


@dataclass(frozen=True, slots=True)
class SoapAnswer:
    """An answer received through obmin, with what was checked about it."""

    raw: bytes
    envelope: SoapEnvelope
    verified: VerifiedSoap | None  # None for a SOAP fault, which obmin does not sign

    @property
    def is_fault(self) -> bool:
        """True when the answer is a SOAP fault (obmin's or the provider's)."""
        return self.envelope.is_fault


class XRoadSoapClient:
    """Sends signed X-Road SOAP requests to an obmin client port."""

    def __init__(
        self,
        gateway_url: str,
        *,
        key: SigningKey,
        certificate: Certificate,
        gateway_trust: TrustStore,
        session: aiohttp.ClientSession,
    ) -> None:
        self._url = gateway_url
        self._key = key
        self._certificate = certificate
        self._trust = gateway_trust
        self._session = session

    def sign(self, envelope: etree._Element, now: datetime | None = None) -> bytes:
        """Sign ``envelope`` with the strict profile and serialise it."""
        signed = sign_soap(
            envelope,
            key=self._key,
            certificate=self._certificate,
            profile="strict",
            now=now or datetime.now(UTC),
        )
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")

    async def send(self, request: bytes) -> SoapAnswer:
        """POST a signed request; check the answer's gateway signature and requestHash."""
        async with self._session.post(
            self._url, data=request, headers={"Content-Type": "text/xml; charset=utf-8"}
        ) as resp:
            raw = await resp.read()
        root = parse_untrusted_xml(raw, XmlLimits(max_bytes=50 * 1024 * 1024))
        envelope = parse_envelope(root, response=True)
        if envelope.is_fault:
            return SoapAnswer(raw, envelope, None)
        verified = verify_soap_signature(
            root,
            policy="strict",
            trust=self._trust,
            now=datetime.now(UTC),
            max_clock_skew=timedelta(minutes=5),
        )
        assert envelope.header is not None
        if envelope.header.request_hash != request_hash(request):
            raise AnswerRejected("the answer's requestHash is not the hash of our request")
        return SoapAnswer(raw, envelope, verified)
