"""Further PKI profiles: TLS server and client, OCSP responder, intermediate CA.

Checked three ways: the extensions themselves, `openssl verify -purpose ...` (an
implementation nobody here wrote), and a real mutual TLS handshake over loopback with
Python's ssl module.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.identifiers import ClientId
from security import PkiError, PkiLayout, init_pki
from security.pki_certs import (
    issue_intermediate_ca,
    issue_ocsp_responder_cert,
    issue_tls_client_cert,
    issue_tls_server_cert,
)
from security.pki_index import read_index

CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
SECRET = b"tls passphrase"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    """A PKI made now (the handshake checks validity against the real clock)."""
    return init_pki(tmp_path_factory.mktemp("profiles"), passphrase=SECRET)


def _eku(cert: x509.Certificate) -> x509.ExtendedKeyUsage:
    return cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def _openssl_verify(ca: Path, cert: Path, purpose: str) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), "-purpose", purpose, str(cert)],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    return result.stdout + result.stderr


def test_tls_server_certificate(layout: PkiLayout) -> None:
    issued = issue_tls_server_cert(layout, passphrase=SECRET)
    assert issued.cert_path == layout.tls_server_cert
    cert = issued.certificate
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert list(_eku(cert)) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "OK" in _openssl_verify(layout.ca_cert, issued.cert_path, "sslserver")


def test_tls_client_certificate_names_the_subsystem_only(layout: PkiLayout) -> None:
    issued = issue_tls_client_cert(layout, CLIENT, passphrase=SECRET)
    assert issued.cert_path == layout.root / "members" / "12345678" / "CLIENT" / "tls.crt"
    cert = issued.certificate
    (common_name,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert common_name.value == "SEVDEIR-TEST/GOV/12345678/CLIENT"
    # No serialNumber: a TLS key must not become a signing key for the whole member.
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER) == []
    assert list(_eku(cert)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert "OK" in _openssl_verify(layout.ca_cert, issued.cert_path, "sslclient")


def test_ocsp_responder_certificate(layout: PkiLayout) -> None:
    issued = issue_ocsp_responder_cert(layout, passphrase=SECRET)
    assert issued.cert_path == layout.ocsp_cert
    cert = issued.certificate
    assert list(_eku(cert)) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert not cert.extensions.get_extension_for_class(x509.OCSPNoCheck).critical
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment
    assert "OK" in _openssl_verify(layout.ca_cert, issued.cert_path, "ocsphelper")


def test_every_issued_certificate_is_in_the_index(layout: PkiLayout, tmp_path: Path) -> None:
    issued = issue_tls_client_cert(layout, CLIENT, out_dir=tmp_path, passphrase=SECRET)
    entries = {entry.serial: entry for entry in read_index(layout.ca_index)}
    entry = entries[issued.certificate.serial_number]
    assert entry.status == "V"
    assert entry.subject == "/O=obmin/CN=SEVDEIR-TEST/GOV/12345678/CLIENT"
    assert entry.expires == issued.certificate.not_valid_after_utc


def test_intermediate_ca(layout: PkiLayout, tmp_path: Path) -> None:
    child = issue_intermediate_ca(
        layout, tmp_path / "sub", name="obmin intermediate", passphrase=SECRET
    )
    cert = x509.load_pem_x509_certificate(child.ca_cert.read_bytes())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert cert.issuer == x509.load_pem_x509_certificate(layout.ca_cert.read_bytes()).subject
    assert "OK" in _openssl_verify(layout.ca_cert, child.ca_cert, "any")
    with pytest.raises(PkiError, match="already exists"):
        issue_intermediate_ca(layout, tmp_path / "sub", name="again", passphrase=SECRET)


def test_bad_host_names_are_refused(layout: PkiLayout) -> None:
    with pytest.raises(PkiError, match="neither an IP address nor a DNS name"):
        issue_tls_server_cert(layout, hosts=["bad host"], passphrase=SECRET)
    with pytest.raises(PkiError, match="at least one host"):
        issue_tls_server_cert(layout, hosts=[], passphrase=SECRET)


async def test_mutual_tls_handshake_with_the_issued_certificates(
    layout: PkiLayout, tmp_path: Path
) -> None:
    server_cert = issue_tls_server_cert(layout, out_dir=tmp_path / "server", passphrase=SECRET)
    client_cert = issue_tls_client_cert(
        layout, CLIENT, out_dir=tmp_path / "client", passphrase=SECRET
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(layout.ca_cert))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    # The keys are encrypted at rest; ssl reads them with the same passphrase.
    server_ctx.load_cert_chain(server_cert.cert_path, server_cert.key_path, password=SECRET)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(layout.ca_cert))
    client_ctx.load_cert_chain(client_cert.cert_path, client_cert.key_path, password=SECRET)
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        subject = dict(item for rdn in peer["subject"] for item in rdn)
        seen.append(subject["commonName"])
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        for host in ("127.0.0.1", "localhost"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=host
            )
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert seen == [str(CLIENT), str(CLIENT)]


def test_profiles_refuse_naive_time(layout: PkiLayout) -> None:
    with pytest.raises(PkiError, match="timezone-aware"):
        issue_tls_server_cert(layout, now=datetime(2025, 1, 1), passphrase=SECRET)
