"""`obmin pki`: every command, keys encrypted at rest by default, passphrase from a file or
the environment (never the command line), clear keys only when asked for, with a warning."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.cli import main
from security import PkiError, load_certificate, load_private_key
from security.pki_index import read_index
from security.pki_keys import PASSPHRASE_ENV

SECRET = b"a passphrase from a file"


@pytest.fixture(autouse=True)
def _no_passphrase_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    yield


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def _pki(tmp_path: Path, secret_file: Path) -> list[str]:
    return ["--dir", str(tmp_path / "pki"), "--passphrase-file", str(secret_file)]


def _encrypted(path: Path) -> bool:
    data = path.read_bytes()
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def test_init_needs_a_passphrase_or_an_explicit_clear_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 1
    err = capsys.readouterr().err
    assert "no key passphrase" in err and "--passphrase-file" in err and "--no-encryption" in err
    assert not (tmp_path / "pki" / "ca" / "ca.key").exists()
    assert main(["pki", "init", "--dir", str(tmp_path / "pki"), "--no-encryption"]) == 0
    assert "warning: --no-encryption: private keys are written UNENCRYPTED" in (
        capsys.readouterr().err
    )
    key = tmp_path / "pki" / "ca" / "ca.key"
    assert not _encrypted(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_passphrase_file_encrypts_every_key(
    tmp_path: Path, secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", *_pki(tmp_path, secret_file)]) == 0
    pki = tmp_path / "pki"
    for key in ("ca/ca.key", "gateway/sign.key", "gateway/log.key"):
        assert _encrypted(pki / key), key
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600
        load_private_key(pki / key, SECRET)
        with pytest.raises(PkiError, match="wrong passphrase"):
            load_private_key(pki / key, b"not it")
        with pytest.raises(PkiError, match="is encrypted"):
            load_private_key(pki / key)
    assert "warning" not in capsys.readouterr().err


def test_environment_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "from the environment")
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0
    load_private_key(tmp_path / "pki" / "gateway" / "sign.key", b"from the environment")
    member = ["SEVDEIR-TEST/GOV/12345678", "--name", "Ministry", "--dir", str(tmp_path / "pki")]
    assert main(["pki", "issue-member", *member]) == 0
    assert _encrypted(tmp_path / "pki" / "members" / "12345678" / "sign.key")
    # The wrong passphrase cannot unlock the CA key: the command says so.
    monkeypatch.setenv(PASSPHRASE_ENV, "something else")
    assert main(["pki", "issue-member", *member]) == 1
    assert "wrong passphrase" in capsys.readouterr().err
    # An empty passphrase is no protection and is refused.
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    assert main(["pki", "issue-member", *member]) == 1
    assert f"environment variable {PASSPHRASE_ENV} holds an empty passphrase" in (
        capsys.readouterr().err
    )


def test_passphrase_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert (
        main(["pki", "init", "--dir", str(tmp_path / "p"), "--passphrase-file", str(missing)]) == 1
    )
    assert f"cannot read passphrase file {missing}" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert main(["pki", "init", "--dir", str(tmp_path / "p"), "--passphrase-file", str(empty)]) == 1
    assert "holds an empty passphrase" in capsys.readouterr().err
    both = tmp_path / "both"
    both.write_bytes(b"x\n")
    args = ["--dir", str(tmp_path / "p"), "--passphrase-file", str(both), "--no-encryption"]
    assert main(["pki", "init", *args]) == 1
    assert "--no-encryption contradicts" in capsys.readouterr().err


def test_issue_every_profile_and_revoke(
    tmp_path: Path, secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = tmp_path / "pki"
    common = _pki(tmp_path, secret_file)
    assert main(["pki", "init", *common]) == 0

    assert main(["pki", "issue-tls-client", "SEVDEIR-TEST/GOV/12345678/CLIENT", *common]) == 0
    client = load_certificate(pki / "members" / "12345678" / "CLIENT" / "tls.crt")
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "SEVDEIR-TEST/GOV/12345678/CLIENT"
    )
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _encrypted(pki / "members" / "12345678" / "CLIENT" / "tls.key")

    assert main(["pki", "issue-tls-server", "--host", "gw.example", "--host", "::1", *common]) == 0
    server = load_certificate(pki / "gateway" / "tls.crt")
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gw.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["::1"]
    assert _encrypted(pki / "gateway" / "tls.key")

    assert main(["pki", "issue-ocsp", "--days", "30", *common]) == 0
    responder = load_certificate(pki / "ocsp" / "ocsp.crt")
    usages = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.OCSP_SIGNING in usages
    assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck) is not None
    assert _encrypted(pki / "ocsp" / "ocsp.key")

    subsystem = ["SEVDEIR-TEST/GOV/12345678/CLIENT", "--key-type", "ec", *common]
    assert main(["pki", "issue-subsystem", *subsystem]) == 0
    out = capsys.readouterr().out
    assert "pin it for SEVDEIR-TEST/GOV/12345678/CLIENT in the registry" in out
    signing = load_certificate(pki / "members" / "12345678" / "CLIENT" / "sign.crt")
    assert signing.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER) == []
    usage = signing.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    assert _encrypted(pki / "members" / "12345678" / "CLIENT" / "sign.key")
    assert main(["pki", "issue-subsystem", "SEVDEIR-TEST/GOV/12345678", *common]) == 1
    assert "is a member, not a subsystem" in capsys.readouterr().err

    tls_crt = pki / "members" / "12345678" / "CLIENT" / "tls.crt"
    assert main(["pki", "revoke", str(tls_crt), "--reason", "keyCompromise", *common]) == 0
    assert f"revoked serial {client.serial_number:x}" in capsys.readouterr().out
    entries = {entry.serial: entry for entry in read_index(pki / "ca" / "index.txt")}
    assert entries[client.serial_number].status == "R"
    crl = x509.load_pem_x509_crl((pki / "ca" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(client.serial_number) is not None
    # Twice is an error that says so; a serial in hex works too.
    assert main(["pki", "revoke", f"{client.serial_number:x}", *common]) == 1
    assert "already revoked" in capsys.readouterr().err
    # revoke writes no key: it does not take --no-encryption.
    with pytest.raises(SystemExit):
        main(["pki", "revoke", str(tls_crt), "--no-encryption", "--dir", str(pki)])
