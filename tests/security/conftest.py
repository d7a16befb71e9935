"""Fixtures for the security tests: a development PKI made once per run by obmin's PKI code,
X-Road envelopes, and a helper that re-signs an edited SignedInfo (so that a refusal in a
test is due to the rule under test, not to a stale signature value)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from registry.identifiers import MemberId
from security import (
    IssuedCert,
    KeyType,
    KeyUsageProfile,
    PkiLayout,
    SigningKey,
    TrustStore,
    init_pki,
    issue_member_cert,
    load_certificate,
    load_private_key,
)
from security.xmldsig import DS, SIGNATURE_METHODS, exc_c14n, sign_value

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
SKEW = timedelta(minutes=5)
MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
OTHER_MEMBER = MemberId("SEVDEIR-TEST", "GOV", "87654321")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XRD_NS = "http://x-road.eu/xsd/xroad.xsd"
ID_NS = "http://x-road.eu/xsd/identifiers"
PROVIDER_NS = "http://registry.example.gov.ua/person"
XROAD_DATA = Path(__file__).parents[2] / ".." / "shared" / "xroad-data"


@dataclass(frozen=True, slots=True)
class Signer:
    """A certificate with its key, as files and as loaded objects."""

    issued: IssuedCert
    key: SigningKey
    cert: x509.Certificate


@dataclass(frozen=True, slots=True)
class Pki:
    """The test PKI: trust, a good member signer and the bad ones the tests need."""

    layout: PkiLayout
    trust: TrustStore
    member: Signer
    other_member: Signer
    ec_member: Signer
    ed_member: Signer
    expired: Signer
    not_yet_valid: Signer
    encipherment: Signer
    untrusted: Signer


def _signer(issued: IssuedCert) -> Signer:
    return Signer(issued, load_private_key(issued.key_path), load_certificate(issued.cert_path))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One development PKI per test run, plus a second, untrusted one."""
    root = tmp_path_factory.mktemp("security-pki")
    layout = init_pki(root / "trusted", now=NOW)
    rogue = init_pki(root / "rogue", now=NOW)

    def issue(
        name: str,
        *,
        target: PkiLayout = layout,
        member: MemberId = MEMBER,
        not_before: datetime | None = None,
        days: int = 365,
        key_type: KeyType = "rsa",
        key_usage: KeyUsageProfile = "signing",
    ) -> Signer:
        issued = issue_member_cert(
            target,
            member,
            name=name,
            out_dir=root / name,
            now=NOW,
            not_before=not_before,
            days=days,
            key_type=key_type,
            key_usage=key_usage,
        )
        return _signer(issued)

    return Pki(
        layout=layout,
        trust=TrustStore([load_certificate(layout.ca_cert)]),
        member=issue("member"),
        other_member=issue("other", member=OTHER_MEMBER),
        ec_member=issue("ec", key_type="ec"),
        ed_member=issue("ed", key_type="ed25519"),
        expired=issue("expired", not_before=NOW - timedelta(days=60), days=30),
        not_yet_valid=issue("future", not_before=NOW + timedelta(days=1), days=30),
        encipherment=issue("encipherment", key_usage="encipherment"),
        untrusted=issue("untrusted", target=rogue),
    )


def xroad_envelope(
    body_text: str = "1234567890", *, user_id: str | None = "UA:officer"
) -> etree._Element:
    """A small X-Road 4.0 request as a client IS would send it (unsigned)."""
    nsmap = {"soap": SOAP_NS, "xrd": XRD_NS, "id": ID_NS, "p": PROVIDER_NS}
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=nsmap)
    header = etree.SubElement(envelope, f"{{{SOAP_NS}}}Header")

    def identifier(tag: str, kind: str, parts: list[tuple[str, str]]) -> None:
        element = etree.SubElement(header, f"{{{XRD_NS}}}{tag}", {f"{{{ID_NS}}}objectType": kind})
        for name, value in parts:
            etree.SubElement(element, f"{{{ID_NS}}}{name}").text = value

    base = [("xRoadInstance", "SEVDEIR-TEST"), ("memberClass", "GOV")]
    identifier(
        "client", "SUBSYSTEM", [*base, ("memberCode", "12345678"), ("subsystemCode", "CLIENT")]
    )
    identifier(
        "service",
        "SERVICE",
        [
            *base,
            ("memberCode", "87654321"),
            ("subsystemCode", "REGISTRY"),
            ("serviceCode", "getPerson"),
            ("serviceVersion", "v1"),
        ],
    )
    etree.SubElement(header, f"{{{XRD_NS}}}id").text = "6f1c2d3e-0000-4000-8000-000000000001"
    if user_id is not None:
        etree.SubElement(header, f"{{{XRD_NS}}}userId").text = user_id
    etree.SubElement(header, f"{{{XRD_NS}}}protocolVersion").text = "4.0"
    body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    request = etree.SubElement(body, f"{{{PROVIDER_NS}}}getPerson")
    etree.SubElement(request, f"{{{PROVIDER_NS}}}rnokpp").text = body_text
    return envelope


def reparse(element: etree._Element) -> etree._Element:
    """Serialise and parse again, as the message would travel (comments kept)."""
    return etree.fromstring(etree.tostring(element))


def resign(envelope: etree._Element, key: SigningKey) -> None:
    """Recompute the SignatureValue over the (edited) SignedInfo, in place."""
    signature = envelope.find(f".//{{{DS}}}Signature")
    assert signature is not None
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    method_element = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod")
    value = signature.find(f"{{{DS}}}SignatureValue")
    assert signed_info is not None and method_element is not None and value is not None
    method = SIGNATURE_METHODS[str(method_element.get("Algorithm"))]
    signed = sign_value(method, key, exc_c14n(signed_info))
    value.text = base64.b64encode(signed).decode("ascii")
