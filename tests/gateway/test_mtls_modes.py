"""`mtls` and `signature+mtls` on the HTTPS client port, for SOAP and REST (X-Road SSLAUTH).

The gateway's own keys here are encrypted at rest and read with the passphrase from
``keys.passphrase_file``: the HTTPS server key (gateway/tls.py) and the signing key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.settings import ClientTlsSettings
from gateway.tls import TlsKeyError, server_ssl_context
from registry import load_registry
from registry.identifiers import ClientId, MemberId
from security import IssuedCert, init_pki, issue_member_cert, load_private_key
from security.pki_certs import issue_tls_client_cert, issue_tls_server_cert
from security.pki_keys import write_key
from tests.gateway.deploy import (
    Gateway,
    provider_app,
    registry,
    rest_call,
    soap_call,
    start_gateway,
)

PASSPHRASE = b"correct horse battery staple"
MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
MTLS = ClientId("SEVDEIR-TEST", "GOV", "12345678", "MTLS")
BOTH = ClientId("SEVDEIR-TEST", "GOV", "12345678", "BOTH")
SSL_FAILED = "Server.ClientProxy.SslAuthenticationFailed"


@dataclass
class Setup:
    gateway: Gateway
    mtls: IssuedCert  # TLS certificate registered for MTLS
    both: IssuedCert  # TLS certificate registered for BOTH
    signer: IssuedCert  # BOTH's signing certificate (pinned)
    unregistered: IssuedCert  # issued by the trusted CA, registered nowhere
    untrusted: IssuedCert  # issued by a CA the gateway does not trust


def _pair(cert: IssuedCert) -> tuple[Path, Path]:
    return cert.cert_path, cert.key_path


@pytest.fixture
async def setup(tmp_path: Path, aiohttp_server: Callable[..., Any]) -> AsyncIterator[Setup]:
    secret = tmp_path / "passphrase"
    secret.write_bytes(PASSPHRASE + b"\n")
    secret.chmod(0o600)
    pki = init_pki(tmp_path / "pki", passphrase=PASSPHRASE)  # every key encrypted
    rogue = init_pki(tmp_path / "rogue")
    server = issue_tls_server_cert(pki, out_dir=tmp_path / "server", passphrase=PASSPHRASE)

    def tls(client: ClientId, name: str) -> IssuedCert:
        return issue_tls_client_cert(pki, client, out_dir=tmp_path / name, passphrase=PASSPHRASE)

    made = {
        "mtls": tls(MTLS, "mtls"),
        "both": tls(BOTH, "both"),
        "unregistered": tls(ClientId("SEVDEIR-TEST", "GOV", "12345678", "NOBODY"), "nobody"),
        "untrusted": issue_tls_client_cert(rogue, MTLS, out_dir=tmp_path / "untrusted"),
    }
    signer = issue_member_cert(
        pki,
        MEMBER,
        name="BOTH signer",
        out_dir=tmp_path / "signer",
        key_type="ed25519",
        passphrase=PASSPHRASE,
    )
    provider: TestServer = await aiohttp_server(provider_app())
    subsystems = [
        {"code": "MTLS", "auth": "mtls", "tls_certificates": [str(made["mtls"].cert_path)]},
        {
            "code": "BOTH",
            "auth": "signature+mtls",
            "tls_certificates": [str(made["both"].cert_path)],
            "signing_certificates": [str(signer.cert_path)],
        },
    ]
    anchors = [{"name": "dev-ca", "certificate": str(pki.ca_cert)}]
    data = registry(anchors, subsystems, str(provider.make_url("")).rstrip("/"))
    gateway = await start_gateway(
        tmp_path,
        data,
        pki.root,
        tls=(server.cert_path, server.key_path, pki.ca_cert),
        keys={"passphrase_file": secret},
    )
    # The client side needs clear keys to present them (aiohttp would prompt otherwise).
    clear = {
        name: _decrypted(made[name], tmp_path / f"clear-{name}")
        for name in ("mtls", "both", "unregistered")
    }
    try:
        yield Setup(
            gateway,
            clear["mtls"],
            clear["both"],
            _decrypted(signer, tmp_path / "clear-signer"),
            clear["unregistered"],
            made["untrusted"],
        )
    finally:
        await gateway.server.close()


def _decrypted(cert: IssuedCert, directory: Path) -> IssuedCert:
    key = load_private_key(cert.key_path, PASSPHRASE)
    directory.mkdir()
    write_key(directory / "key.pem", key)
    return IssuedCert(cert.cert_path, directory / "key.pem", cert.certificate)


async def test_mtls_soap_and_rest(setup: Setup) -> None:
    gw = setup.gateway
    mtls = _pair(setup.mtls)
    assert (await soap_call(gw, MTLS, signer=None, tls=mtls)).fault is None
    served = await rest_call(gw, MTLS, signer=None, tls=mtls)
    assert (served.status, served.error) == (200, None), served.body
    # No TLS certificate, or one registered for another subsystem.
    for tls in (None, _pair(setup.both)):
        soap = await soap_call(gw, MTLS, signer=None, tls=tls)
        assert soap.fault == SSL_FAILED
        rest = await rest_call(gw, MTLS, signer=None, tls=tls)
        assert (rest.status, rest.error) == (500, SSL_FAILED)


async def test_signature_and_mtls_soap_and_rest(setup: Setup) -> None:
    gw = setup.gateway
    tls, signer = _pair(setup.both), _pair(setup.signer)
    # Both present: served.
    assert (await soap_call(gw, BOTH, signer=signer, tls=tls)).fault is None
    served = await rest_call(gw, BOTH, signer=signer, tls=tls)
    assert (served.status, served.error) == (200, None), served.body
    # The signature missing: refused although the TLS certificate is right.
    assert (await soap_call(gw, BOTH, signer=None, tls=tls)).fault == "Client.MissingSignature"
    unsigned = await rest_call(gw, BOTH, signer=None, tls=tls)
    assert (unsigned.status, unsigned.error) == (400, "Client.MissingSignature")
    # The TLS certificate missing, or not the one registered: refused although signed.
    for wrong in (None, _pair(setup.mtls)):
        soap = await soap_call(gw, BOTH, signer=signer, tls=wrong)
        assert soap.fault == SSL_FAILED
        rest = await rest_call(gw, BOTH, signer=signer, tls=wrong)
        assert (rest.status, rest.error) == (500, SSL_FAILED)


async def test_trusted_but_unregistered_and_untrusted_certificates(setup: Setup) -> None:
    gw = setup.gateway
    # Issued by the trusted CA, registered for no subsystem: the handshake passes, the
    # registry says no.
    nobody = _pair(setup.unregistered)
    for client in (MTLS, BOTH):
        signer = _pair(setup.signer) if client == BOTH else None
        assert (await soap_call(gw, client, signer=signer, tls=nobody)).fault == SSL_FAILED
        rest = await rest_call(gw, client, signer=signer, tls=nobody)
        assert (rest.status, rest.error) == (500, SSL_FAILED)
    # Issued by a CA the gateway does not trust (same subject as MTLS's): the handshake
    # itself fails, before any message is read.
    with pytest.raises(aiohttp.ClientError):
        await soap_call(gw, MTLS, signer=None, tls=_pair(setup.untrusted))
    with pytest.raises(aiohttp.ClientError):
        await rest_call(gw, MTLS, signer=None, tls=_pair(setup.untrusted))
    # And the port keeps serving.
    assert (await soap_call(gw, MTLS, signer=None, tls=_pair(setup.mtls))).fault is None


def test_encrypted_server_key_needs_the_passphrase(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "pki")
    server = issue_tls_server_cert(pki, out_dir=tmp_path / "server", passphrase=PASSPHRASE)
    assert b"ENCRYPTED" in server.key_path.read_bytes()
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "r.yaml").write_text("instance: SEVDEIR-TEST\n", encoding="utf-8")
    reg = load_registry(tmp_path / "registry")
    settings = ClientTlsSettings(port=0, certificate=server.cert_path, key=server.key_path)
    assert server_ssl_context(settings, reg, PASSPHRASE) is not None
    # Without a passphrase: a clear error, never an OpenSSL prompt on the terminal.
    with pytest.raises(TlsKeyError, match=r"is encrypted; set keys\.passphrase_file"):
        server_ssl_context(settings, reg, None)
    with pytest.raises(TlsKeyError, match="cannot load the TLS certificate"):
        server_ssl_context(settings, reg, b"wrong passphrase")
