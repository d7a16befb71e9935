"""Path validation through an intermediate CA: root -> intermediate -> member.

The intermediate comes with the message (a further BinarySecurityToken, or passed in) or is
configured in the trust store; it is never trusted by itself.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from security import (
    CertValidation,
    PkiLayout,
    SigningKey,
    TrustStore,
    init_pki,
    issue_member_cert,
    load_certificate,
    load_private_key,
    sign_soap,
    validate_signer,
    verify_soap_signature,
)
from security.pki_certs import issue_intermediate_ca
from security.xmldsig import BASE64_BINARY, DS, WSSE, X509V3
from tests.security.conftest import MEMBER, NOW, SKEW, reparse, xroad_envelope


@dataclass(frozen=True, slots=True)
class TwoLevel:
    """A root CA, an intermediate under it, and certificates issued below the intermediate."""

    root: x509.Certificate
    intermediate: x509.Certificate
    member: x509.Certificate
    member_key: SigningKey
    short_lived_intermediate: x509.Certificate
    under_short_lived: x509.Certificate
    too_deep_ca: x509.Certificate
    too_deep: x509.Certificate
    rogue_intermediate: x509.Certificate
    under_rogue: x509.Certificate


def _ca(layout: PkiLayout) -> x509.Certificate:
    return load_certificate(layout.ca_cert)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> TwoLevel:
    """The two-level PKI, made by obmin's PKI code."""
    base = tmp_path_factory.mktemp("two-level")
    root = init_pki(base / "root", now=NOW)
    inter = issue_intermediate_ca(root, base / "inter", name="obmin issuing CA", now=NOW)
    member = issue_member_cert(inter, MEMBER, name="member", out_dir=base / "m", now=NOW)
    short = issue_intermediate_ca(root, base / "short", name="short CA", days=30, now=NOW)
    under_short = issue_member_cert(short, MEMBER, name="s", out_dir=base / "s", now=NOW)
    # The intermediate has pathLenConstraint 0: a CA below it must not be accepted.
    deeper = issue_intermediate_ca(inter, base / "deeper", name="too deep CA", now=NOW)
    too_deep = issue_member_cert(deeper, MEMBER, name="d", out_dir=base / "d", now=NOW)
    # Same names as ours, but under another root.
    rogue_root = init_pki(base / "rogue", now=NOW)
    rogue = issue_intermediate_ca(
        rogue_root, base / "rogue-inter", name="obmin issuing CA", now=NOW
    )
    under_rogue = issue_member_cert(rogue, MEMBER, name="r", out_dir=base / "r", now=NOW)
    return TwoLevel(
        root=_ca(root),
        intermediate=_ca(inter),
        member=member.certificate,
        member_key=load_private_key(member.key_path),
        short_lived_intermediate=_ca(short),
        under_short_lived=under_short.certificate,
        too_deep_ca=_ca(deeper),
        too_deep=too_deep.certificate,
        rogue_intermediate=_ca(rogue),
        under_rogue=under_rogue.certificate,
    )


def test_intermediate_from_the_message(chain: TwoLevel) -> None:
    signer = validate_signer(chain.member, [chain.intermediate], TrustStore([chain.root]), NOW)
    assert signer.member_id == MEMBER
    assert signer.chain == (chain.member, chain.intermediate, chain.root)
    assert signer.issuer == chain.intermediate
    assert signer.anchor == chain.root


def test_configured_intermediate(chain: TwoLevel) -> None:
    trust = TrustStore([chain.root], intermediates=[chain.intermediate])
    assert trust.intermediates == (chain.intermediate,)
    signer = validate_signer(chain.member, [], trust, NOW)
    assert signer.issuer == chain.intermediate


def test_missing_intermediate_is_refused(chain: TwoLevel) -> None:
    with pytest.raises(CertValidation, match="does not chain to a trusted CA"):
        validate_signer(chain.member, [], TrustStore([chain.root]), NOW)


def test_the_intermediate_alone_is_not_a_trust_anchor(chain: TwoLevel) -> None:
    # Trusting the root only: an intermediate from another root with the same name fails.
    with pytest.raises(CertValidation, match="does not chain"):
        validate_signer(
            chain.under_rogue, [chain.rogue_intermediate], TrustStore([chain.root]), NOW
        )
    # And a message cannot smuggle in its own root as an "intermediate".
    with pytest.raises(CertValidation, match="does not chain"):
        validate_signer(
            chain.member, [chain.intermediate], TrustStore([chain.rogue_intermediate]), NOW
        )


def test_an_expired_intermediate_breaks_the_path(chain: TwoLevel) -> None:
    trust = TrustStore([chain.root])
    validate_signer(chain.under_short_lived, [chain.short_lived_intermediate], trust, NOW)
    later = NOW + timedelta(days=60)
    with pytest.raises(CertValidation, match="not valid at validation time"):
        validate_signer(chain.under_short_lived, [chain.short_lived_intermediate], trust, later)


def test_path_length_constraint_is_enforced(chain: TwoLevel) -> None:
    # root -> intermediate (pathLen 0) -> deeper CA -> member: one CA too many.
    path = [chain.too_deep_ca, chain.intermediate]
    with pytest.raises(CertValidation, match="path length constraint"):
        validate_signer(chain.too_deep, path, TrustStore([chain.root]), NOW)


def test_too_many_message_certificates(chain: TwoLevel) -> None:
    with pytest.raises(CertValidation, match="at most 8"):
        validate_signer(chain.member, [chain.intermediate] * 9, TrustStore([chain.root]), NOW)


def _add_token(envelope: etree._Element, cert: x509.Certificate) -> None:
    security = envelope.find(f".//{{{WSSE}}}Security")
    signature = envelope.find(f".//{{{DS}}}Signature")
    assert security is not None and signature is not None
    token = etree.Element(
        f"{{{WSSE}}}BinarySecurityToken", {"EncodingType": BASE64_BINARY, "ValueType": X509V3}
    )
    token.text = base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")
    signature.addprevious(token)


def test_signed_message_carrying_its_intermediate(chain: TwoLevel) -> None:
    signed = sign_soap(xroad_envelope(), key=chain.member_key, certificate=chain.member, now=NOW)
    trust = TrustStore([chain.root])
    with pytest.raises(CertValidation, match="does not chain"):
        verify_soap_signature(
            reparse(signed), policy="strict", trust=trust, now=NOW, max_clock_skew=SKEW
        )
    _add_token(signed, chain.intermediate)
    verified = verify_soap_signature(
        reparse(signed), policy="strict", trust=trust, now=NOW, max_clock_skew=SKEW
    )
    assert verified.signer.chain == (chain.member, chain.intermediate, chain.root)
    assert verified.signer.member_id == MEMBER


def test_a_cached_path_needs_its_intermediate_at_hand(chain: TwoLevel) -> None:
    trust = TrustStore([chain.root])
    validate_signer(chain.member, [chain.intermediate], trust, NOW)
    assert trust.cache_size == 1
    # The next message comes without the intermediate: the cached path is not reused.
    with pytest.raises(CertValidation, match="does not chain"):
        validate_signer(chain.member, [], trust, NOW)
