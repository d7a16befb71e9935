"""Signer policy beyond the basics: extended key usage, and the bounded validation cache."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.identifiers import ClientId
from security import CertValidation, TrustStore, cert_thumbprint, load_certificate, validate_signer
from security.pki import issue_certificate
from security.pki_build import Extensions
from security.pki_certs import issue_tls_client_cert, issue_tls_server_cert
from tests.security.conftest import MEMBER, NOW, Pki

_SIGNING_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _with_eku(pki: Pki, name: str, usages: list[x509.ObjectIdentifier]) -> x509.Certificate:
    extensions: Extensions = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_SIGNING_USAGE, True),
        (x509.ExtendedKeyUsage(usages), False),
    ]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "EKU test"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(MEMBER)),
        ]
    )
    target = pki.layout.root / "eku" / name
    issued = issue_certificate(
        pki.layout,
        subject=subject,
        extensions=extensions,
        cert_path=target / "sign.crt",
        key_path=target / "sign.key",
        days=30,
        now=NOW,
        key_type="ec",
    )
    return issued.certificate


@pytest.mark.parametrize(
    "usages",
    [
        [ExtendedKeyUsageOID.SERVER_AUTH],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [ExtendedKeyUsageOID.OCSP_SIGNING],
        [ExtendedKeyUsageOID.CODE_SIGNING],
    ],
    ids=["serverAuth", "clientAuth", "tls-both", "ocspSigning", "codeSigning"],
)
def test_an_eku_that_does_not_allow_signing_is_refused(
    pki: Pki, usages: list[x509.ObjectIdentifier]
) -> None:
    # Key usage digitalSignature + nonRepudiation and the member's serialNumber: all that a
    # signer needs, except that its EKU restricts the key to other purposes.
    cert = _with_eku(pki, "-".join(u.dotted_string for u in usages), usages)
    with pytest.raises(CertValidation, match=r"extended key usage .* does not allow signing"):
        validate_signer(cert, [], pki.trust, NOW)


@pytest.mark.parametrize(
    "usages",
    [
        [ExtendedKeyUsageOID.EMAIL_PROTECTION],
        [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
        [x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")],  # id-kp-documentSigning
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION],
    ],
    ids=["emailProtection", "anyExtendedKeyUsage", "documentSigning", "clientAuth+email"],
)
def test_signing_ekus_are_accepted(pki: Pki, usages: list[x509.ObjectIdentifier]) -> None:
    cert = _with_eku(pki, "ok-" + "-".join(u.dotted_string for u in usages), usages)
    assert validate_signer(cert, [], pki.trust, NOW).member_id == MEMBER


def test_tls_certificates_of_the_dev_pki_cannot_sign(pki: Pki) -> None:
    client = issue_tls_client_cert(
        pki.layout,
        ClientId.parse("SEVDEIR-TEST/GOV/12345678/CLIENT"),
        out_dir=pki.layout.root / "tls-client",
        now=NOW,
    )
    server = issue_tls_server_cert(pki.layout, out_dir=pki.layout.root / "tls-server", now=NOW)
    for issued in (client, server):
        with pytest.raises(CertValidation, match="extended key usage"):
            validate_signer(issued.certificate, [], pki.trust, NOW)


def test_cache_is_keyed_on_the_signer_not_on_the_extra_certificates(pki: Pki) -> None:
    trust = TrustStore([load_certificate(pki.layout.ca_cert)], cache_size=8)
    # An unauthenticated sender who holds a (public) valid certificate sends it with a
    # different set of junk certificates each time: one cache entry, not one per message.
    junk = [pki.other_member.cert, pki.ec_member.cert, pki.ed_member.cert, pki.expired.cert]
    for n in range(len(junk) + 1):
        validate_signer(pki.member.cert, junk[:n], trust, NOW)
    assert trust.cache_size == 1


def test_failed_validations_are_not_cached(pki: Pki) -> None:
    trust = TrustStore([load_certificate(pki.layout.ca_cert)], cache_size=8)
    for which in (pki.expired, pki.untrusted, pki.encipherment, pki.not_yet_valid):
        with pytest.raises(CertValidation):
            validate_signer(which.cert, [], trust, NOW)
    assert trust.cache_size == 0


def test_cache_evicts_the_least_recently_used_one_at_a_time(pki: Pki) -> None:
    trust = TrustStore([load_certificate(pki.layout.ca_cert)], cache_size=2)
    member, other, ec = pki.member.cert, pki.other_member.cert, pki.ec_member.cert
    first = validate_signer(member, [], trust, NOW)
    validate_signer(other, [], trust, NOW)
    assert validate_signer(member, [], trust, NOW) is first  # a hit: member is now most recent
    validate_signer(ec, [], trust, NOW)  # evicts `other` only (no wholesale clear)
    assert trust.cache_size == 2
    assert trust.cached(cert_thumbprint(member), NOW, []) is first
    assert trust.cached(cert_thumbprint(other), NOW, []) is None
    assert trust.cached(cert_thumbprint(ec), NOW, []) is not None


def test_a_cached_validation_is_not_reused_outside_the_validity(pki: Pki) -> None:
    trust = TrustStore([load_certificate(pki.layout.ca_cert)])
    validate_signer(pki.member.cert, [], trust, NOW)
    with pytest.raises(CertValidation, match="expired"):
        validate_signer(pki.member.cert, [], trust, NOW + timedelta(days=400))


def test_cache_size_must_be_positive(pki: Pki) -> None:
    with pytest.raises(Exception, match="cache size"):
        TrustStore([load_certificate(pki.layout.ca_cert)], cache_size=0)
