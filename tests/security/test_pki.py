"""The development PKI: identity fields, key usage, file modes, refusal to replace a CA,
keys encrypted at rest with a passphrase from the environment or a file."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from registry.identifiers import MemberId
from security import PkiError, init_pki, issue_member_cert, load_certificate, load_private_key
from security.pki_keys import PASSPHRASE_ENV, pki_passphrase
from tests.security.conftest import MEMBER, NOW, Pki


def _serial_number(cert: x509.Certificate) -> str:
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(attribute.value)


def test_member_certificate_names_the_member_and_may_sign(pki: Pki) -> None:
    cert = pki.member.cert
    assert _serial_number(cert) == str(MEMBER)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "member"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    ca = load_certificate(pki.layout.ca_cert)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert isinstance(pki.member.key, rsa.RSAPrivateKey) and pki.member.key.key_size == 2048
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365)


def test_gateway_certificate_and_ca(pki: Pki) -> None:
    gateway = load_certificate(pki.layout.gateway_cert)
    assert _serial_number(gateway) == "SEVDEIR-TEST/GOV/00000000"
    assert gateway.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "obmin gateway"
    assert isinstance(load_private_key(pki.layout.gateway_key), rsa.RSAPrivateKey)
    ca = load_certificate(pki.layout.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_private_keys_are_private(pki: Pki) -> None:
    for path in (pki.layout.ca_key, pki.layout.gateway_key, pki.member.issued.key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_other_key_types_and_test_only_profiles(pki: Pki) -> None:
    assert isinstance(pki.ec_member.key, ec.EllipticCurvePrivateKey)
    assert isinstance(pki.ed_member.key, ed25519.Ed25519PrivateKey)
    usage = pki.encipherment.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and not usage.digital_signature
    assert not usage.content_commitment
    assert pki.expired.cert.not_valid_after_utc < NOW


def test_init_refuses_to_replace_a_ca_unless_forced(tmp_path: Path) -> None:
    layout = init_pki(tmp_path, now=NOW)
    first = layout.ca_cert.read_bytes()
    with pytest.raises(PkiError, match="already exists"):
        init_pki(tmp_path, now=NOW)
    assert layout.ca_cert.read_bytes() == first
    init_pki(tmp_path, now=NOW, force=True)
    assert layout.ca_cert.read_bytes() != first


def test_issue_defaults_to_the_member_directory(tmp_path: Path) -> None:
    layout = init_pki(tmp_path, instance="EE", now=NOW)
    member = MemberId("EE", "GOV", "70000001")
    issued = issue_member_cert(tmp_path, member, name="Example", now=NOW)
    assert issued.cert_path == layout.root / "members" / "70000001" / "sign.crt"
    assert _serial_number(load_certificate(issued.cert_path)) == "EE/GOV/70000001"


def test_loading_bad_files_is_a_pki_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(PkiError, match="not a PEM or DER"):
        load_certificate(junk)
    with pytest.raises(PkiError, match="is not a PEM private key"):
        load_private_key(junk)
    with pytest.raises(PkiError, match="cannot read"):
        load_certificate(tmp_path / "missing.crt")
    with pytest.raises(PkiError, match="cannot read private key"):
        issue_member_cert(tmp_path / "nothing", MEMBER, name="x", now=NOW)


def test_keys_are_encrypted_at_rest_with_a_passphrase(tmp_path: Path) -> None:
    secret = b"correct horse battery staple"
    layout = init_pki(tmp_path, now=NOW, passphrase=secret)
    issued = issue_member_cert(layout, MEMBER, name="m", now=NOW, passphrase=secret)
    for path in (layout.ca_key, layout.gateway_key, issued.key_path):
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(PkiError, match="is encrypted; set OBMIN_PKI_PASSPHRASE"):
            load_private_key(path)
        with pytest.raises(PkiError, match="wrong passphrase"):
            load_private_key(path, b"wrong")
    key = load_private_key(issued.key_path, secret)
    assert key.public_key() == issued.certificate.public_key()
    # The CA key is needed to issue: without the passphrase nothing is issued.
    with pytest.raises(PkiError, match="is encrypted"):
        issue_member_cert(layout, MEMBER, name="n", now=NOW, out_dir=tmp_path / "n")
    assert not (tmp_path / "n").exists()


def test_unencrypted_development_keys_still_load_with_a_passphrase(pki: Pki) -> None:
    key = load_private_key(pki.member.issued.key_path, b"configured later")
    assert key.public_key() == pki.member.cert.public_key()
    assert pki.member.issued.key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_passphrase_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    assert pki_passphrase({}) is None
    assert pki_passphrase({PASSPHRASE_ENV: "from env"}) == b"from env"
    secret_file = tmp_path / "passphrase"
    secret_file.write_bytes(b"from file\nignored second line\n")
    # An explicitly named file wins over the environment; only its first line counts.
    assert pki_passphrase({PASSPHRASE_ENV: "from env"}, secret_file) == b"from file"
    secret_file.write_bytes(b"\n")
    with pytest.raises(PkiError, match="empty passphrase"):
        pki_passphrase({}, secret_file)
    with pytest.raises(PkiError, match="empty passphrase"):
        pki_passphrase({PASSPHRASE_ENV: ""})
    with pytest.raises(PkiError, match="cannot read passphrase file"):
        pki_passphrase({}, tmp_path / "missing")
