"""OCSP through the gateway, against a real `openssl ocsp` responder: good signers served,
revoked ones refused with their fault, the gateway's and the anchor's revocation settings
in force (nonce required, timeout, on_unavailable)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from registry.identifiers import ClientId, MemberId
from security import IssuedCert, KeyType, PkiLayout, init_pki, issue_member_cert, load_certificate
from security.pki_certs import issue_ocsp_responder_cert
from security.pki_revoke import revoke
from tests.gateway.deploy import provider_app, registry, rest_call, soap_call, start_gateway
from tests.security.test_revocation_ocsp import openssl_responder

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="the openssl command is not installed; these tests run a real `openssl ocsp`",
)

MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
SOAP_CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT")
REST_CLIENT = ClientId("SEVDEIR-TEST", "GOV", "12345678", "RESTCLIENT")
REST_REVOKED = ClientId("SEVDEIR-TEST", "GOV", "12345678", "RESTREVOKED")


@dataclass(frozen=True)
class OcspSetup:
    layout: PkiLayout
    good: IssuedCert
    revoked: IssuedCert
    rest_good: IssuedCert
    rest_revoked: IssuedCert
    responder: IssuedCert


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> OcspSetup:
    base = tmp_path_factory.mktemp("ocsp-e2e")
    layout = init_pki(base / "pki")

    def member(name: str, key_type: KeyType = "rsa") -> IssuedCert:
        return issue_member_cert(layout, MEMBER, name=name, out_dir=base / name, key_type=key_type)

    made = OcspSetup(
        layout=layout,
        good=member("good"),
        revoked=member("revoked"),
        rest_good=member("rest-good", "ed25519"),
        rest_revoked=member("rest-revoked", "ed25519"),
        responder=issue_ocsp_responder_cert(layout),
    )
    revoke(layout, made.revoked.cert_path, reason="keyCompromise")
    revoke(layout, made.rest_revoked.cert_path, reason="affiliationChanged")
    return made


@pytest.fixture(scope="module")
def responder(setup: OcspSetup) -> Iterator[str]:
    cert, key = setup.responder.cert_path, setup.responder.key_path
    with openssl_responder(setup.layout, cert, key, "-nmin", "10") as url:
        yield url


def _subsystems(setup: OcspSetup) -> list[dict[str, Any]]:
    return [
        {"code": "CLIENT"},
        {"code": "RESTCLIENT", "signing_certificates": [str(setup.rest_good.cert_path)]},
        {"code": "RESTREVOKED", "signing_certificates": [str(setup.rest_revoked.cert_path)]},
    ]


def _anchor(setup: OcspSetup, url: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "dev-ca",
            "certificate": str(setup.layout.ca_cert),
            "revocation": "ocsp",
            "ocsp_url": url,
            **extra,
        }
    ]


async def test_good_served_revoked_refused(
    setup: OcspSetup, responder: str, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    provider: TestServer = await aiohttp_server(provider_app())
    data = registry(
        _anchor(setup, responder, require_nonce=True),  # openssl ocsp echoes our nonce
        _subsystems(setup),
        str(provider.make_url("")).rstrip("/"),
    )
    gateway = await start_gateway(tmp_path, data, setup.layout.root)
    try:
        good = (setup.good.cert_path, setup.good.key_path)
        bad = (setup.revoked.cert_path, setup.revoked.key_path)
        assert (await soap_call(gateway, SOAP_CLIENT, signer=good)).fault is None
        refused = await soap_call(gateway, SOAP_CLIENT, signer=bad)
        assert refused.fault == "Client.CertValidation"
        assert "was revoked on" in (refused.faultstring or "")
        assert "(reason: keyCompromise)" in (refused.faultstring or "")
        rest_good = (setup.rest_good.cert_path, setup.rest_good.key_path)
        rest_bad = (setup.rest_revoked.cert_path, setup.rest_revoked.key_path)
        served = await rest_call(gateway, REST_CLIENT, signer=rest_good)
        assert (served.status, served.error) == (200, None), served.body
        rest_refused = await rest_call(gateway, REST_REVOKED, signer=rest_bad)
        assert (rest_refused.status, rest_refused.error) == (400, "Client.CertValidation")
        assert b"(reason: affiliationChanged)" in rest_refused.body
        # And the gateway keeps serving.
        assert (await soap_call(gateway, SOAP_CLIENT, signer=good)).fault is None
    finally:
        await gateway.server.close()


@pytest.mark.parametrize("on_unavailable", ["reject", "accept"])
async def test_responder_down_follows_the_anchor_policy(
    setup: OcspSetup,
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
    unused_tcp_port: int,
    on_unavailable: str,
) -> None:
    provider: TestServer = await aiohttp_server(provider_app())
    dead = f"http://127.0.0.1:{unused_tcp_port}/"
    data = registry(
        _anchor(setup, dead, on_unavailable=on_unavailable),
        _subsystems(setup),
        str(provider.make_url("")).rstrip("/"),
    )
    gateway = await start_gateway(tmp_path, data, setup.layout.root)
    try:
        answer = await soap_call(
            gateway, SOAP_CLIENT, signer=(setup.good.cert_path, setup.good.key_path)
        )
        if on_unavailable == "reject":
            assert answer.fault == "Client.CertValidation"
            assert "revocation status unavailable" in (answer.faultstring or "")
        else:
            assert answer.fault is None
    finally:
        await gateway.server.close()


async def test_gateway_revocation_settings_are_used(
    setup: OcspSetup, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    provider: TestServer = await aiohttp_server(provider_app())
    data = registry(_anchor(setup, url), _subsystems(setup), str(provider.make_url("")).rstrip("/"))
    gateway = await start_gateway(
        tmp_path, data, setup.layout.root, settings_extra={"revocation": {"timeout_seconds": 0.25}}
    )
    try:
        answer = await soap_call(
            gateway, SOAP_CLIENT, signer=(setup.good.cert_path, setup.good.key_path)
        )
        assert answer.fault == "Client.CertValidation"
        assert "did not answer within 0.25 s" in (answer.faultstring or "")
    finally:
        await gateway.server.close()
        server.close()
        await server.wait_closed()


async def test_anchor_require_nonce_reaches_the_gateway(
    setup: OcspSetup, responder: str, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    # A genuine answer for the good certificate to a request without a nonce, served to
    # every request (what a caching responder or a replaying attacker does).
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(
            load_certificate(setup.good.cert_path),
            load_certificate(setup.layout.ca_cert),
            hashes.SHA1(),
        )
        .build()
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            responder,
            data=request.public_bytes(Encoding.DER),
            headers={"Content-Type": "application/ocsp-request"},
        ) as response,
    ):
        captured = await response.read()

    async def precomputed(_request: web.Request) -> web.Response:
        return web.Response(body=captured, content_type="application/ocsp-response")

    app = web.Application()
    app.router.add_post("/", precomputed)
    replayer: TestServer = await aiohttp_server(app)
    url = str(replayer.make_url("/"))
    provider: TestServer = await aiohttp_server(provider_app())
    provider_url = str(provider.make_url("")).rstrip("/")
    good = (setup.good.cert_path, setup.good.key_path)
    for require_nonce, expected in ((False, None), (True, "Client.CertValidation")):
        data = registry(
            _anchor(setup, url, require_nonce=require_nonce), _subsystems(setup), provider_url
        )
        gateway = await start_gateway(
            tmp_path, data, setup.layout.root, name=f"nonce-{require_nonce}"
        )
        try:
            answer = await soap_call(gateway, SOAP_CLIENT, signer=good)
            assert answer.fault == expected
            if expected:
                assert "does not echo the request nonce" in (answer.faultstring or "")
        finally:
            await gateway.server.close()
