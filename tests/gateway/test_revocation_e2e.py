"""A revoked signer is refused by the gateway (CRL per trust anchor), a good one is served."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from adapters.client import build_soap_request
from adapters.example_provider import create_provider_app
from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import ClientId, MemberId, ServiceId
from security import init_pki, issue_member_cert, load_certificate, load_private_key, sign_soap
from security.pki_revoke import revoke, write_crl
from tests.gateway.conftest import registry_for
from tests.gateway.test_signed_exchange import _body

SERVICE = ServiceId(ClientId.parse("SEVDEIR-TEST/GOV/87654321/REGISTRY"), "getPerson", "v1")


async def test_revoked_signer_is_refused(
    tmp_path: Path, aiohttp_client: Callable[..., Any], aiohttp_server: Callable[..., Any]
) -> None:
    pki = init_pki(tmp_path / "pki")
    crl_path = write_crl(pki)

    async def crl(request: web.Request) -> web.Response:
        return web.Response(body=crl_path.read_bytes(), content_type="application/pkix-crl")

    crl_app = web.Application()
    crl_app.router.add_get("/ca.crl", crl)
    crl_server: TestServer = await aiohttp_server(crl_app)
    crl_url = str(crl_server.make_url("/ca.crl"))
    good = issue_member_cert(
        pki,
        MemberId("SEVDEIR-TEST", "GOV", "12345678"),
        name="Good",
        out_dir=tmp_path / "good",
        crl_url=crl_url,
    )
    bad = issue_member_cert(
        pki,
        MemberId("SEVDEIR-TEST", "GOV", "12345678"),
        name="Revoked",
        out_dir=tmp_path / "bad",
        crl_url=crl_url,
    )
    revoke(pki, bad.cert_path, reason="keyCompromise")

    provider: TestServer = await aiohttp_server(create_provider_app())
    registry = registry_for(pki.ca_cert, str(provider.make_url("")).rstrip("/"))
    registry["trust_anchors"][0]["revocation"] = "crl"
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "keys": {"signing_certificate": pki.gateway_cert, "signing_key": pki.gateway_key},
            "audit": {"path": tmp_path / "audit.db"},
        }
    )
    client = await aiohttp_client(create_client_app(settings))

    async def call(cert_path: Path, key_path: Path) -> str | None:
        envelope = build_soap_request(
            ClientId("SEVDEIR-TEST", "GOV", "12345678", "CLIENT"), SERVICE, _body()
        )
        signed = sign_soap(
            envelope,
            key=load_private_key(key_path),
            certificate=load_certificate(cert_path),
            now=datetime.now(UTC),
        )
        response = await client.post(
            "/", data=etree.tostring(signed), headers={"Content-Type": "text/xml"}
        )
        return etree.fromstring(await response.read()).findtext(".//faultcode")

    assert await call(good.cert_path, good.key_path) is None
    assert await call(bad.cert_path, bad.key_path) == "Client.CertValidation"
    assert await call(good.cert_path, good.key_path) is None  # and the gateway keeps serving
