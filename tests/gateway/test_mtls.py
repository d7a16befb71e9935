"""The HTTPS client port and X-Road SSLAUTH (`auth: mtls`), like X-Road's SslClientAuth* cases."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from lxml import etree

from adapters.client import build_soap_request
from adapters.example_provider import create_provider_app
from gateway.server import create_client_app
from gateway.settings import ClientTlsSettings, Settings
from gateway.tls import server_ssl_context
from registry import load_registry
from registry.identifiers import ClientId
from security import IssuedCert
from security.pki_certs import issue_tls_client_cert, issue_tls_server_cert
from tests.gateway.conftest import registry_for
from tests.gateway.test_signed_exchange import SERVICE, _body

MTLS = ClientId("SEVDEIR-TEST", "GOV", "12345678", "MTLS")
OTHER = ClientId("SEVDEIR-TEST", "GOV", "12345678", "OTHERTLS")


@pytest.fixture
async def https_gateway(
    dev_pki: Path, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> AsyncIterator[tuple[str, dict[str, IssuedCert]]]:
    certs = {
        "mtls": issue_tls_client_cert(dev_pki, MTLS, out_dir=tmp_path / "mtls"),
        "other": issue_tls_client_cert(dev_pki, OTHER, out_dir=tmp_path / "other"),
        "expired": issue_tls_client_cert(
            dev_pki,
            MTLS,
            out_dir=tmp_path / "expired",
            days=1,
            now=datetime.now(UTC) - timedelta(days=30),
        ),
    }
    server_cert = issue_tls_server_cert(dev_pki, out_dir=tmp_path / "server")
    provider = await aiohttp_server(create_provider_app())
    registry = registry_for(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
    registry["members"][0]["subsystems"] += [
        {"code": "MTLS", "auth": "mtls", "tls_certificates": [str(certs["mtls"].cert_path)]},
        {"code": "OTHERTLS", "auth": "mtls", "tls_certificates": [str(certs["other"].cert_path)]},
    ]
    registry["access"][0]["clients"] += [str(MTLS), str(OTHER)]
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    tls = ClientTlsSettings(port=0, certificate=server_cert.cert_path, key=server_cert.key_path)
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "client_tls": tls.model_dump(),
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
        }
    )
    context = server_ssl_context(tls, load_registry(tmp_path / "registry"))
    server = TestServer(create_client_app(settings))
    await server.start_server(ssl=context)
    try:
        url = str(server.make_url("/"))
        assert url.startswith("https://")
        yield url, certs
    finally:
        await server.close()


async def _call(url: str, ca: Path, cert: IssuedCert | None, client: ClientId) -> str | None:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert.cert_path, cert.key_path)
    request = etree.tostring(build_soap_request(client, SERVICE, _body()))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=request, ssl=context, headers={"Content-Type": "text/xml"}
        ) as response,
    ):
        root = etree.fromstring(await response.read())
    return root.findtext(".//faultcode")


async def test_mtls_client_authentication(
    https_gateway: tuple[str, dict[str, IssuedCert]], dev_pki: Path
) -> None:
    url, certs = https_gateway
    ca = dev_pki / "ca" / "ca.crt"
    assert await _call(url, ca, certs["mtls"], MTLS) is None  # SslClientAuth
    refused = "Server.ClientProxy.SslAuthenticationFailed"
    assert await _call(url, ca, None, MTLS) == refused  # SslClientAuthNoISCert
    assert await _call(url, ca, certs["other"], MTLS) == refused  # SslClientAuthWrongISCert
    assert await _call(url, ca, certs["mtls"], OTHER) == refused  # another subsystem's cert
    with pytest.raises(aiohttp.ClientError):  # SslClientAuthExpiredISCert: handshake refused
        await _call(url, ca, certs["expired"], MTLS)
    assert await _call(url, ca, certs["other"], OTHER) is None  # and the port keeps serving
