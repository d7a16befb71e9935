"""The CA index (OpenSSL format) and revocation: index lines, `revoke`, the CRL.

Interop: `openssl ca` reads the index we write (``-status``, ``-gencrl``) and
`openssl crl -verify` accepts the CRL we sign.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from registry.identifiers import MemberId
from security import PkiError, PkiLayout, init_pki, issue_member_cert, load_certificate
from security.pki_index import IndexEntry, openssl_subject, read_index, serial_hex
from security.pki_revoke import revocation_target, revoke, write_crl
from tests.security.conftest import MEMBER, NOW


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    """A fresh PKI per test: revocation changes it."""
    return init_pki(tmp_path / "pki", now=NOW)


def _issue(layout: PkiLayout, name: str) -> x509.Certificate:
    out = layout.root / name
    return issue_member_cert(
        layout, MEMBER, name=name, out_dir=out, now=NOW, key_type="ec"
    ).certificate


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, check=False, timeout=20
    )


def _ca_config(layout: PkiLayout) -> Path:
    config = layout.root / "openssl-ca.cnf"
    config.write_text(
        "[ca]\ndefault_ca = dev\n[dev]\n"
        f"database = {layout.ca_index}\ncertificate = {layout.ca_cert}\n"
        f"private_key = {layout.ca_key}\ndefault_md = sha256\ndefault_crl_days = 1\n",
        encoding="utf-8",
    )
    return config


def test_serial_and_subject_formats() -> None:
    assert serial_hex(0) == "00"
    assert serial_hex(0xABC) == "0ABC"
    assert serial_hex(0x1F00) == "1F00"
    with pytest.raises(PkiError):
        serial_hex(-1)
    name = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "Міністерство"),
            x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, "UA/GOV/1"),
        ]
    )
    subject = openssl_subject(name)
    assert subject.startswith("/CN=\\xD0\\x9C")
    assert subject.endswith("/serialNumber=UA/GOV/1")


def test_index_lines_round_trip() -> None:
    valid = IndexEntry("V", datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC), None, None, 0xAB, "/CN=x")
    assert valid.line() == "V\t310102030405Z\t\tAB\tunknown\t/CN=x"
    revoked = valid.revoked(datetime(2030, 6, 1, tzinfo=UTC), "keyCompromise")
    assert revoked.line() == "R\t310102030405Z\t300601000000Z,keyCompromise\tAB\tunknown\t/CN=x"
    late = IndexEntry("V", datetime(2051, 1, 1, tzinfo=UTC), None, None, 1, "/CN=y")
    assert "\t20510101000000Z\t" in late.line()
    for entry in (valid, revoked, late):
        assert IndexEntry.parse(entry.line()) == entry
    for bad in ("X\t1\t\t2\tunknown\t/", "V\t310102030405Z\t\tZZ\tunknown\t/", "V\tshort"):
        with pytest.raises(PkiError):
            IndexEntry.parse(bad)


def test_revoke_updates_the_index_and_the_crl(layout: PkiLayout) -> None:
    keep, drop = _issue(layout, "keep"), _issue(layout, "drop")
    done = revoke(layout, layout.root / "drop" / "sign.crt", reason="keyCompromise", now=NOW)
    assert done.serial == drop.serial_number
    assert done.revoked_at == NOW.replace(microsecond=0)
    by_serial = {entry.serial: entry for entry in read_index(layout.ca_index)}
    assert by_serial[drop.serial_number].status == "R"
    assert by_serial[drop.serial_number].reason == "keyCompromise"
    assert by_serial[keep.serial_number].status == "V"
    crl = x509.load_pem_x509_crl(layout.ca_crl.read_bytes())
    assert crl.is_signature_valid(load_certificate(layout.ca_cert).public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(drop.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == done.revoked_at
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(keep.serial_number) is None
    assert crl.next_update_utc == done.revoked_at + timedelta(days=7)


def test_crl_numbers_increase_and_unspecified_has_no_reason(layout: PkiLayout) -> None:
    cert = _issue(layout, "one")
    write_crl(layout, now=NOW)
    first = x509.load_pem_x509_crl(layout.ca_crl.read_bytes())
    assert len(first) == 0
    revoke(layout, cert.serial_number, now=NOW)
    second = x509.load_pem_x509_crl(layout.ca_crl.read_bytes())
    numbers = [
        crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for crl in (first, second)
    ]
    assert numbers == [1, 2]
    entry = second.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    with pytest.raises(x509.ExtensionNotFound):
        entry.extensions.get_extension_for_class(x509.CRLReason)
    (line,) = [e for e in read_index(layout.ca_index) if e.serial == cert.serial_number]
    assert line.reason is None


def test_revoke_refusals(layout: PkiLayout, tmp_path: Path) -> None:
    cert = _issue(layout, "once")
    revoke(layout, cert.serial_number, now=NOW)
    with pytest.raises(PkiError, match="already revoked"):
        revoke(layout, cert.serial_number, now=NOW)
    with pytest.raises(PkiError, match="is not in the CA index"):
        revoke(layout, 0x1234, now=NOW)
    other = init_pki(tmp_path / "other", now=NOW)
    stranger = issue_member_cert(other, MemberId("SEVDEIR-TEST", "GOV", "1"), name="s", now=NOW)
    with pytest.raises(PkiError, match="was not issued by the CA"):
        revoke(layout, stranger.cert_path, now=NOW)
    with pytest.raises(PkiError, match="unknown revocation reason"):
        revoke(layout, cert.serial_number, reason="certificateHold", now=NOW)  # type: ignore[arg-type]


def test_revocation_target_reads_files_and_serials(tmp_path: Path) -> None:
    cert_file = tmp_path / "x.crt"
    cert_file.write_text("")
    assert revocation_target(str(cert_file)) == cert_file
    assert revocation_target("0A1B") == 0x0A1B
    assert revocation_target("0x0a:1b") == 0x0A1B
    assert revocation_target("F") == 0xF
    with pytest.raises(PkiError, match="neither a certificate file nor a hex serial"):
        revocation_target("not/a/file")


def test_openssl_ca_reads_our_index(layout: PkiLayout) -> None:
    keep, drop = _issue(layout, "keep"), _issue(layout, "drop")
    revoke(layout, drop.serial_number, reason="superseded", now=NOW)
    config = str(_ca_config(layout))
    for cert, expected in ((keep, "Valid (V)"), (drop, "Revoked (R)")):
        result = _openssl("ca", "-config", config, "-status", serial_hex(cert.serial_number))
        assert f"{serial_hex(cert.serial_number)}={expected}" in result.stdout + result.stderr
    generated = layout.root / "openssl.crl"
    result = _openssl("ca", "-config", config, "-gencrl", "-out", str(generated))
    assert result.returncode == 0, result.stderr
    crl = x509.load_pem_x509_crl(generated.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(drop.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.superseded


def test_openssl_verifies_our_crl(layout: PkiLayout) -> None:
    revoke(layout, _issue(layout, "gone").serial_number, now=datetime.now(UTC))
    result = _openssl("crl", "-in", str(layout.ca_crl), "-CAfile", str(layout.ca_cert), "-noout")
    assert "verify OK" in result.stdout + result.stderr


def test_a_replaced_ca_starts_a_new_index_and_crl(layout: PkiLayout) -> None:
    revoke(layout, _issue(layout, "old").serial_number, now=NOW)
    assert layout.ca_crl.exists() and len(read_index(layout.ca_index)) == 2
    init_pki(layout.root, now=NOW, force=True)
    assert not layout.ca_crl.exists() and not layout.ca_crl_number.exists()
    (gateway,) = read_index(layout.ca_index)
    assert gateway.serial == load_certificate(layout.gateway_cert).serial_number
