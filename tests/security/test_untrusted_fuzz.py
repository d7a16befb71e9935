"""Property tests on the security parsers of untrusted input: WS-Security headers, OCSP
responses and CRLs. Whatever the bytes or the tree, only obmin's coded errors escape
(`SecurityError` and its subclasses, each with a ``code``)."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from security import (
    PkiLayout,
    SecurityError,
    TrustStore,
    init_pki,
    issue_member_cert,
    load_certificate,
    load_private_key,
    sign_soap,
    verify_soap_signature,
)
from security.crl import crl_status, verify_crl
from security.ocsp import build_ocsp_query, verify_ocsp_response
from security.pki_revoke import write_crl
from security.revocation_base import RevocationConfig
from security.signedinfo import read_signature
from security.wstoken import IdIndex, read_timestamp, signer_certificates
from security.xmldsig import DS, WSSE, WSU
from tests.security.conftest import MEMBER, NOW, xroad_envelope

CONFIG = RevocationConfig()
SKEW = timedelta(minutes=5)


class Material:
    """A signed envelope, a real OCSP response and a real CRL, made once."""

    def __init__(self, base: Path) -> None:
        self.layout: PkiLayout = init_pki(base / "pki", now=NOW)
        self.ca = load_certificate(self.layout.ca_cert)
        issued = issue_member_cert(self.layout, MEMBER, name="fuzz", out_dir=base / "m", now=NOW)
        self.member = issued.certificate
        signed = sign_soap(
            xroad_envelope(),
            key=load_private_key(issued.key_path),
            certificate=self.member,
            now=NOW,
        )
        self.envelope = etree.tostring(signed)
        self.trust = TrustStore([self.ca])
        self.query = build_ocsp_query(self.member, self.ca, b"\x07" * 16)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=self.member,
                issuer=self.ca,
                algorithm=hashes.SHA1(),
                cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=NOW,
                next_update=NOW + timedelta(hours=1),
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca)
            .add_extension(x509.OCSPNonce(b"\x07" * 16), critical=False)
        )
        ca_key = load_private_key(self.layout.ca_key)
        self.ocsp = builder.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.DER)
        self.crl_pem = write_crl(self.layout, now=NOW).read_bytes()
        self.crl_der = x509.load_pem_x509_crl(self.crl_pem).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(tmp_path_factory.mktemp("fuzz"))


def test_the_material_is_valid(material: Material) -> None:
    # The unmutated inputs pass: the properties below start from working messages.
    root = etree.fromstring(material.envelope)
    verify_soap_signature(root, policy="strict", trust=material.trust, now=NOW, max_clock_skew=SKEW)
    facts = verify_ocsp_response(
        material.ocsp, material.query, material.ca, NOW, CONFIG, source="test"
    )
    assert facts.status == "good"
    for data in (material.crl_pem, material.crl_der):
        verified = verify_crl(data, material.ca, NOW, CONFIG, source="test")
        assert crl_status(verified, material.member.serial_number).status == "good"


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer[:cut] if cut is not None else buffer)


edits = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6)
cuts = st.one_of(st.none(), st.integers(min_value=0, max_value=4096))
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(edits, cuts)
def test_ocsp_response_verification(
    material: Material, changes: list[tuple[int, int]], cut: int | None
) -> None:
    data = _mutate(material.ocsp, changes, cut)
    try:
        verify_ocsp_response(data, material.query, material.ca, NOW, CONFIG, source="fuzz")
    except SecurityError as exc:
        assert exc.code


@FUZZ
@given(st.binary(max_size=2048))
def test_ocsp_response_from_random_bytes(material: Material, data: bytes) -> None:
    try:
        verify_ocsp_response(data, material.query, material.ca, NOW, CONFIG, source="fuzz")
    except SecurityError as exc:
        assert exc.code


@FUZZ
@given(st.sampled_from(["pem", "der"]), edits, cuts)
def test_crl_verification(
    material: Material, form: str, changes: list[tuple[int, int]], cut: int | None
) -> None:
    base = material.crl_pem if form == "pem" else material.crl_der
    data = _mutate(base, changes, cut)
    try:
        verified = verify_crl(data, material.ca, NOW, CONFIG, source="fuzz")
        crl_status(verified, material.member.serial_number)
    except SecurityError as exc:
        assert exc.code


def test_crl_with_an_invalid_version(material: Material) -> None:
    # Found by test_crl_verification: a CRL whose version is 0 raised cryptography's
    # InvalidVersion, which is no ValueError, out of verify_crl.
    version = material.crl_der.index(b"\x02\x01\x01")  # TBSCertList version v2
    data = bytearray(material.crl_der)
    data[version + 2] = 0
    with pytest.raises(SecurityError, match="did not serve a CRL"):
        verify_crl(bytes(data), material.ca, NOW, CONFIG, source="fuzz")


# --- WS-Security header parsing: mutations of a signed envelope's Security header --------

_TARGETS = (
    f"{{{DS}}}SignedInfo",
    f"{{{DS}}}Reference",
    f"{{{DS}}}Transform",
    f"{{{DS}}}DigestMethod",
    f"{{{DS}}}DigestValue",
    f"{{{DS}}}SignatureMethod",
    f"{{{DS}}}SignatureValue",
    f"{{{DS}}}KeyInfo",
    f"{{{WSSE}}}SecurityTokenReference",
    f"{{{WSSE}}}Reference",
    f"{{{WSSE}}}BinarySecurityToken",
    f"{{{WSU}}}Timestamp",
    f"{{{WSU}}}Created",
    f"{{{WSU}}}Expires",
)
_ATTRIBUTES = ("Algorithm", "URI", "ValueType", "EncodingType", f"{{{WSU}}}Id", "PrefixList")
_texts = st.one_of(
    st.sampled_from(
        [
            "",
            "AAAA",
            "#",
            "#x",
            "not base64!",
            "2025-03-14T09:26:53Z",
            "2025-13-40T99:99:99",
            "http://www.w3.org/2000/09/xmldsig#sha1",
            "http://www.w3.org/TR/1999/REC-xpath-19991116",
        ]
    ),
    st.text(max_size=40),
)
_operations = st.lists(
    st.tuples(
        st.sampled_from(_TARGETS),
        st.sampled_from(["remove", "text", "attribute", "duplicate", "child"]),
        st.sampled_from(_ATTRIBUTES),
        _texts,
    ),
    min_size=1,
    max_size=4,
)


def _xml_safe(text: str) -> str:
    return "".join(
        c for c in text if c in "\t\n\r" or (0x20 <= ord(c) <= 0xD7FF) or 0xE000 <= ord(c) <= 0xFFFD
    )


def _apply(root: etree._Element, operation: tuple[str, str, str, str]) -> None:
    tag, action, attribute, text = operation
    found = list(root.iter(tag))
    if not found:
        return
    element = found[0]
    parent = element.getparent()
    text = _xml_safe(text)
    if action == "remove" and parent is not None:
        parent.remove(element)
    elif action == "text":
        element.text = text
    elif action == "attribute":
        element.set(attribute, text)
    elif action == "duplicate" and parent is not None:
        parent.append(copy.deepcopy(element))
    elif action == "child":
        etree.SubElement(element, f"{{{DS}}}Object").text = text


@FUZZ
@given(_operations)
# Found by this test: non-ASCII text in a DigestValue escaped base64 decoding as ValueError.
@example(operations=[(f"{{{DS}}}DigestValue", "text", "Algorithm", "\x80")])
def test_ws_security_header_parsing(
    material: Material, operations: list[tuple[str, str, str, str]]
) -> None:
    root = etree.fromstring(material.envelope)
    for operation in operations:
        _apply(root, operation)
    signature = next(root.iter(f"{{{DS}}}Signature"), None)
    security = next(root.iter(f"{{{WSSE}}}Security"), None)
    try:
        if signature is not None and security is not None:
            parts = read_signature(signature)
            signer_certificates(parts.key_info, security, IdIndex(root))
        for timestamp in root.iter(f"{{{WSU}}}Timestamp"):
            read_timestamp(timestamp)
    except SecurityError as exc:
        assert exc.code
    try:
        verify_soap_signature(
            root, policy="strict", trust=material.trust, now=NOW, max_clock_skew=SKEW
        )
    except SecurityError as exc:
        assert exc.code
