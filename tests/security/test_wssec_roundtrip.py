"""sign_soap then verify_soap_signature: profiles, algorithms, freshness, what is returned."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from security import (
    CertValidation,
    InvalidSignatureValue,
    MissingSignature,
    SignaturePolicy,
    SigningError,
    StaleMessage,
    VerifiedSoap,
    sign_soap,
    verify_soap_signature,
)
from security.xmldsig import DS, WSSE, WSU, XMLDSIG_MORE_2007, exc_c14n
from tests.security.conftest import (
    MEMBER,
    NOW,
    PROVIDER_NS,
    SKEW,
    SOAP_NS,
    XRD_NS,
    XROAD_DATA,
    Pki,
    Signer,
    reparse,
    xroad_envelope,
)

_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"


def _sign(
    signer: Signer,
    envelope: etree._Element | None = None,
    *,
    profile: SignaturePolicy = "strict",
    ttl: timedelta = timedelta(minutes=5),
    signature_method: str | None = None,
    digest_method: str = _SHA256,
    now: datetime = NOW,
) -> etree._Element:
    signed = sign_soap(
        envelope if envelope is not None else xroad_envelope(),
        key=signer.key,
        certificate=signer.cert,
        now=now,
        profile=profile,
        ttl=ttl,
        signature_method=signature_method,
        digest_method=digest_method,
    )
    return reparse(signed)


def _verify(
    envelope: etree._Element,
    pki: Pki,
    policy: SignaturePolicy = "strict",
    *,
    now: datetime = NOW,
) -> VerifiedSoap:
    return verify_soap_signature(
        envelope, policy=policy, trust=pki.trust, now=now, max_clock_skew=SKEW
    )


def test_strict_round_trip(pki: Pki) -> None:
    envelope = _sign(pki.member)
    verified = _verify(envelope, pki)
    body = envelope.find(f"{{{SOAP_NS}}}Body")
    assert verified.signed_body is body
    assert verified.signed_header_names == {"client", "service", "id", "userId", "protocolVersion"}
    assert verified.signer.member_id == MEMBER
    assert verified.timestamp_created == NOW.replace(microsecond=0)
    assert verified.signature_method == _MORE + "rsa-sha256"
    value = envelope.findtext(f".//{{{DS}}}SignatureValue")
    assert value is not None
    expected = base64.b64encode(hashlib.sha512(base64.b64decode(value)).digest()).decode()
    assert verified.signature_value_digest == expected


def test_sign_soap_leaves_the_input_alone_and_sets_no_must_understand(pki: Pki) -> None:
    original = xroad_envelope()
    before = etree.tostring(original)
    signed = sign_soap(original, key=pki.member.key, certificate=pki.member.cert, now=NOW)
    assert etree.tostring(original) == before
    security = signed.find(f"{{{SOAP_NS}}}Header/{{{WSSE}}}Security")
    assert security is not None
    assert not any("mustUnderstand" in name for name in security.attrib)
    # wsu is declared once on the Envelope, not re-declared with invented prefixes.
    assert signed.nsmap.get("wsu") == WSU
    assert b"ns0:" not in etree.tostring(signed)


def test_standard_round_trip_without_timestamp(pki: Pki) -> None:
    envelope = _sign(pki.member, profile="standard")
    assert envelope.find(f".//{{{WSU}}}Timestamp") is None
    verified = _verify(envelope, pki, "standard")
    assert verified.timestamp_created is None
    with pytest.raises(
        InvalidSignatureValue, match="strict policy requires a signed wsu:Timestamp"
    ):
        _verify(envelope, pki, "strict")


def test_strict_signing_needs_the_xroad_headers(pki: Pki) -> None:
    envelope = xroad_envelope()
    header = envelope.find(f"{{{SOAP_NS}}}Header")
    assert header is not None
    header.remove(header.find(f"{{{XRD_NS}}}client"))  # type: ignore[arg-type]
    with pytest.raises(SigningError, match="client"):
        sign_soap(envelope, key=pki.member.key, certificate=pki.member.cert, now=NOW)


def test_signing_an_envelope_without_header(pki: Pki) -> None:
    envelope = xroad_envelope()
    envelope.remove(envelope[0])
    signed = _sign(pki.member, envelope, profile="standard")
    assert signed[0].tag == f"{{{SOAP_NS}}}Header"
    assert _verify(signed, pki, "standard").signed_header_names == frozenset()


@pytest.mark.parametrize(
    ("which", "method", "digest"),
    [
        ("member", _MORE + "rsa-sha512", _SHA512),
        ("member", XMLDSIG_MORE_2007 + "sha256-rsa-MGF1", _MORE + "sha384"),
        (
            "member",
            XMLDSIG_MORE_2007 + "sha512-rsa-MGF1",
            _SHA256,
        ),
        ("ec_member", None, _SHA256),
        ("ec_member", _MORE + "ecdsa-sha384", _SHA512),
        ("ed_member", None, _SHA256),
    ],
)
def test_allowed_algorithms(pki: Pki, which: str, method: str | None, digest: str) -> None:
    signer: Signer = getattr(pki, which)
    envelope = _sign(signer, signature_method=method, digest_method=digest)
    verified = _verify(envelope, pki)
    if method is not None:
        assert verified.signature_method == method


def test_rsa_pss_with_explicit_parameters(pki: Pki) -> None:
    """RFC 9231 ``#rsa-pss`` with RSAPSSParams (SHA-512, salt 64) verifies."""
    envelope = _sign(pki.member, signature_method=XMLDSIG_MORE_2007 + "sha512-rsa-MGF1")
    method = envelope.find(f".//{{{DS}}}SignatureMethod")
    assert method is not None
    method.set("Algorithm", XMLDSIG_MORE_2007 + "rsa-pss")
    params = etree.SubElement(method, f"{{{XMLDSIG_MORE_2007}}}RSAPSSParams")
    etree.SubElement(params, f"{{{DS}}}DigestMethod", Algorithm=_SHA512)
    mgf = etree.SubElement(
        params,
        f"{{{XMLDSIG_MORE_2007}}}MaskGenerationFunction",
        Algorithm=XMLDSIG_MORE_2007 + "MGF1",
    )
    etree.SubElement(mgf, f"{{{DS}}}DigestMethod", Algorithm=_SHA512)
    etree.SubElement(params, f"{{{XMLDSIG_MORE_2007}}}SaltLength").text = "64"
    etree.SubElement(params, f"{{{XMLDSIG_MORE_2007}}}TrailerField").text = "1"
    # Re-sign SignedInfo as it now reads, with the parameters it declares.
    key = pki.member.key
    assert isinstance(key, rsa.RSAPrivateKey)
    signed_info = envelope.find(f".//{{{DS}}}SignedInfo")
    assert signed_info is not None
    value = key.sign(
        exc_c14n(signed_info), padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512()
    )
    value_element = envelope.find(f".//{{{DS}}}SignatureValue")
    assert value_element is not None
    value_element.text = base64.b64encode(value).decode()
    assert _verify(envelope, pki).signature_method == XMLDSIG_MORE_2007 + "rsa-pss"
    # The same bytes under a different declared salt length do not verify.
    salt = method.find(f".//{{{XMLDSIG_MORE_2007}}}SaltLength")
    assert salt is not None
    salt.text = "32"
    value = key.sign(
        exc_c14n(signed_info), padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512()
    )
    value_element.text = base64.b64encode(value).decode()
    with pytest.raises(InvalidSignatureValue, match="signature value does not match"):
        _verify(envelope, pki)


@pytest.mark.parametrize(
    ("signed_at", "message"),
    [
        (NOW - SKEW - timedelta(seconds=1), "older than 300 s"),
        (NOW + SKEW + timedelta(seconds=1), "in the future"),
    ],
)
def test_stale_or_future_timestamp(pki: Pki, signed_at: datetime, message: str) -> None:
    envelope = _sign(pki.member, now=signed_at, ttl=timedelta(hours=1))
    with pytest.raises(StaleMessage, match=message) as info:
        _verify(envelope, pki)
    assert info.value.code == "StaleMessage"


def test_expired_timestamp(pki: Pki) -> None:
    envelope = _sign(pki.member, ttl=timedelta(seconds=30))
    _verify(envelope, pki, now=NOW + timedelta(seconds=30))
    with pytest.raises(StaleMessage, match="expired at"):
        _verify(envelope, pki, now=NOW + timedelta(seconds=31))


def test_fresh_within_skew(pki: Pki) -> None:
    envelope = _sign(pki.member)
    _verify(envelope, pki, now=NOW + SKEW)
    _verify(envelope, pki, now=NOW - SKEW)


def test_unsigned_message(pki: Pki) -> None:
    with pytest.raises(MissingSignature, match="no wsse:Security") as info:
        _verify(xroad_envelope(), pki)
    assert info.value.code == "MissingSignature"
    envelope = xroad_envelope()
    envelope.remove(envelope[0])
    with pytest.raises(MissingSignature, match="no SOAP Header"):
        _verify(envelope, pki)
    envelope = _sign(pki.member)
    signature = envelope.find(f".//{{{DS}}}Signature")
    assert signature is not None
    signature.getparent().remove(signature)  # type: ignore[union-attr]
    with pytest.raises(MissingSignature, match="holds no ds:Signature"):
        _verify(envelope, pki)


@pytest.mark.parametrize("which", ["expired", "untrusted", "encipherment"])
def test_signer_certificate_is_validated(pki: Pki, which: str) -> None:
    envelope = _sign(getattr(pki, which))
    with pytest.raises(CertValidation):
        _verify(envelope, pki)


def test_spec_example_messages_sign_and_verify(pki: Pki) -> None:
    examples = XROAD_DATA / "spec-examples" / "pr-mess"
    if not examples.is_dir():
        pytest.skip(f"X-Road test data not found at {examples}")
    for name in ("pr-mess_E.1_request.xml", "pr-mess_E.2_response.xml"):
        envelope = etree.parse(str(examples / name)).getroot()
        verified = _verify(_sign(pki.member, envelope), pki)
        assert {"client", "service", "id", "userId", "issue"} <= verified.signed_header_names
        if name.endswith("response.xml"):
            assert "requestHash" in verified.signed_header_names


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_TEXT, replacement=st.characters(blacklist_categories=("Cs", "Cc")))
def test_any_body_text_round_trips_and_any_change_is_caught(
    pki: Pki, text: str, replacement: str
) -> None:
    envelope = _sign(pki.member, xroad_envelope(text))
    verified = _verify(envelope, pki)
    value = verified.signed_body.find(f".//{{{PROVIDER_NS}}}rnokpp")
    assert value is not None and value.text == text
    changed = replacement + text[1:]
    if changed == text:
        return
    value.text = changed
    with pytest.raises(InvalidSignatureValue, match="digest of reference"):
        _verify(envelope, pki)
