"""Signer certificate validation: chain to an anchor, validity, key usage, identity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from security import (
    CertValidation,
    TrustStore,
    cert_thumbprint,
    load_certificate,
    load_private_key,
    validate_signer,
)
from tests.security.conftest import MEMBER, NOW, Pki


def test_good_signer(pki: Pki) -> None:
    signer = validate_signer(pki.member.cert, [], pki.trust, NOW)
    assert signer.member_id == MEMBER
    assert signer.certificate is pki.member.cert
    assert signer.thumbprint_sha256 == cert_thumbprint(pki.member.cert)
    assert len(signer.thumbprint_sha256) == 64
    assert signer.der.startswith(b"\x30")


def test_ec_and_ed25519_signers(pki: Pki) -> None:
    for signer in (pki.ec_member, pki.ed_member):
        assert validate_signer(signer.cert, [], pki.trust, NOW).member_id == MEMBER


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("expired", "expired on"),
        ("not_yet_valid", "not valid before"),
        ("untrusted", "does not chain to a trusted CA"),
        ("encipherment", "neither digitalSignature nor nonRepudiation"),
    ],
)
def test_refused_signers(pki: Pki, which: str, message: str) -> None:
    cert = getattr(pki, which).cert
    with pytest.raises(CertValidation, match=message) as info:
        validate_signer(cert, [], pki.trust, NOW)
    assert info.value.code == "CertValidation"


def test_validity_is_judged_at_the_given_time(pki: Pki) -> None:
    later = NOW + timedelta(days=400)
    with pytest.raises(CertValidation, match="expired"):
        validate_signer(pki.member.cert, [], pki.trust, later)


def test_a_ca_certificate_cannot_sign(pki: Pki) -> None:
    ca = load_certificate(pki.layout.ca_cert)
    with pytest.raises(CertValidation, match="neither digitalSignature"):
        validate_signer(ca, [], pki.trust, NOW)


def test_no_anchors_trusts_nothing(pki: Pki) -> None:
    with pytest.raises(CertValidation, match="no trust anchors"):
        validate_signer(pki.member.cert, [], TrustStore([]), NOW)


def test_naive_time_is_refused(pki: Pki) -> None:
    with pytest.raises(CertValidation, match="timezone"):
        validate_signer(pki.member.cert, [], pki.trust, NOW.replace(tzinfo=None))


@pytest.mark.parametrize("serial", [None, "not-a-member", "A/B/C/D"])
def test_member_id_is_none_without_a_valid_serial_number(pki: Pki, serial: str | None) -> None:
    ca_key = load_private_key(pki.layout.ca_key)
    ca = load_certificate(pki.layout.ca_cert)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, "pinned system")]
    if serial is not None:
        names.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    signer = validate_signer(cert, [], pki.trust, NOW)
    assert signer.member_id is None
