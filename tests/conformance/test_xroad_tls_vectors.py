"""X-Road's SslClientAuth* and SslToService* proxy cases, over real TLS on loopback.

Client IS -> gateway: the HTTPS client port with X-Road SSLAUTH (`auth: mtls`), the client
IS presenting the TLS certificate registered for it (or none, another, an expired one).
Gateway -> provider IS: HTTPS to the provider, verified with the registry's CA certificates
and with the gateway's client certificate where the provider asks for one.

The request and answer are the upstream vectors (``getstate.query``, ``getstate.answer``),
read in place; the expected codes are those of ``testcases.tsv`` except where noted in
`DEVIATIONS`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.tls import server_ssl_context
from registry import load_registry
from registry.identifiers import ClientId
from security import IssuedCert, init_pki
from security.pki_certs import issue_tls_client_cert, issue_tls_server_cert
from tests.conformance.conftest import base_registry
from tests.conformance.test_xroad_proxy_vectors import (
    CASES,
    QUERIES,
    VECTORS,
    _fault_code,
)
from tests.support import GatewayFactory, ProviderBehaviour, provider_app

pytestmark = pytest.mark.skipif(
    not (VECTORS / "testcases.tsv").is_file(),
    reason=f"X-Road proxy test vectors not found at {VECTORS} (shared/ is not beside the clone)",
)

CONSUMER = ClientId("EE", "BUSINESS", "consumer")
EXPECTED = {case.name: case.expected for case in CASES}
CLIENT_SIDE = (
    "SslClientAuth",
    "SslClientAuthNoISCert",
    "SslClientAuthWrongISCert",
    "SslClientAuthExpiredISCert",
)
PROVIDER_SIDE = (
    "SslToServiceAuth",
    "SslToServiceNoAuth",
    "SslToServiceNoISCerts",
    "SslToServiceWrongISCert",
)
HANDSHAKE_REFUSED = "TLS handshake refused"
DEVIATIONS = {
    # Upstream pins self-signed IS certificates and judges their validity after the
    # handshake; obmin verifies the client certificate's chain (dev CA) in the handshake
    # itself, which refuses an expired certificate before any message is read. The client
    # sees a TLS alert instead of the SslAuthenticationFailed fault; nothing is forwarded.
    "SslClientAuthExpiredISCert": HANDSHAKE_REFUSED,
}


def _answer() -> ProviderBehaviour:
    return ProviderBehaviour(body=(QUERIES / "getstate.answer").read_bytes())


@dataclass
class ClientSide:
    url: str
    ca: Path
    certs: dict[str, IssuedCert]
    behaviour: ProviderBehaviour


@pytest.fixture
async def client_side(
    dev_pki: Path, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> AsyncIterator[ClientSide]:
    certs = {
        "registered": issue_tls_client_cert(dev_pki, CONSUMER, out_dir=tmp_path / "is"),
        "other": issue_tls_client_cert(dev_pki, CONSUMER, out_dir=tmp_path / "other-is"),
        "expired": issue_tls_client_cert(
            dev_pki,
            CONSUMER,
            out_dir=tmp_path / "expired-is",
            days=1,
            now=datetime.now(UTC) - timedelta(days=30),
        ),
    }
    behaviour = _answer()
    provider: TestServer = await aiohttp_server(provider_app(behaviour))
    registry = base_registry(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
    consumer = registry["members"][0]
    consumer["auth"] = "mtls"
    # The expired certificate is registered too: only its validity is wrong.
    consumer["tls_certificates"] = [
        str(certs["registered"].cert_path),
        str(certs["expired"].cert_path),
    ]
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    server_cert = issue_tls_server_cert(dev_pki, out_dir=tmp_path / "server")
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "client_tls": {
                "port": 0,
                "certificate": server_cert.cert_path,
                "key": server_cert.key_path,
            },
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
        }
    )
    assert settings.client_tls is not None
    context = server_ssl_context(settings.client_tls, load_registry(tmp_path / "registry"))
    server = TestServer(create_client_app(settings))
    await server.start_server(ssl=context)
    try:
        yield ClientSide(str(server.make_url("/")), dev_pki / "ca" / "ca.crt", certs, behaviour)
    finally:
        await server.close()


async def _post(url: str, ca: Path, cert: IssuedCert | None) -> str | None:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert.cert_path, cert.key_path)
    data = (QUERIES / "getstate.query").read_bytes()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, data=data, ssl=context, headers={"Content-Type": "text/xml; charset=UTF-8"}
            ) as response,
        ):
            assert response.status == 200
            return _fault_code(await response.read())
    except aiohttp.ClientError:
        return HANDSHAKE_REFUSED


@pytest.mark.parametrize("name", CLIENT_SIDE)
async def test_client_is_to_gateway(name: str, client_side: ClientSide) -> None:
    presented = {
        "SslClientAuth": client_side.certs["registered"],
        "SslClientAuthNoISCert": None,
        "SslClientAuthWrongISCert": client_side.certs["other"],
        "SslClientAuthExpiredISCert": client_side.certs["expired"],
    }[name]
    code = await _post(client_side.url, client_side.ca, presented)
    expected = DEVIATIONS.get(name, EXPECTED[name])
    assert code == (expected or None)
    forwarded = [body for _, body in client_side.behaviour.received]
    assert forwarded == ([(QUERIES / "getstate.query").read_bytes()] if not expected else [])
    # The port keeps serving the registered client.
    assert await _post(client_side.url, client_side.ca, client_side.certs["registered"]) is None


@dataclass
class TlsProvider:
    url: str
    behaviour: ProviderBehaviour
    gateway_cert: IssuedCert


@pytest.fixture
async def start_tls_provider(dev_pki: Path, tmp_path: Path) -> AsyncIterator[Callable[[bool], Any]]:
    """Start the provider IS over HTTPS, asking for the gateway's certificate or not."""
    servers: list[TestServer] = []

    async def start(client_auth: bool) -> TlsProvider:
        server_cert = issue_tls_server_cert(dev_pki, out_dir=tmp_path / "provider-tls")
        gateway_cert = issue_tls_client_cert(
            dev_pki, ClientId.parse("EE/BUSINESS/gateway"), out_dir=tmp_path / "gw-tls"
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(server_cert.cert_path, server_cert.key_path)
        if client_auth:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(dev_pki / "ca" / "ca.crt")
        behaviour = _answer()
        server = TestServer(provider_app(behaviour))
        await server.start_server(ssl=context)
        servers.append(server)
        return TlsProvider(str(server.make_url("")).rstrip("/"), behaviour, gateway_cert)

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


def _provider_tls(name: str, provider: TlsProvider, dev_pki: Path, other_ca: Path) -> Any:
    client = {
        "client_certificate": str(provider.gateway_cert.cert_path),
        "client_key": str(provider.gateway_cert.key_path),
    }
    return {
        # The provider asks for the gateway's certificate; its own is verified.
        "SslToServiceAuth": {"ca_certificates": [str(dev_pki / "ca" / "ca.crt")], **client},
        # X-Road's NOAUTH: the provider asks for nothing and its certificate is not verified.
        "SslToServiceNoAuth": {"verify": False},
        # Verification on, but no CA certificate that issued the provider's certificate.
        "SslToServiceNoISCerts": client,
        # Verification against a CA that did not issue it.
        "SslToServiceWrongISCert": {"ca_certificates": [str(other_ca)], **client},
    }[name]


@pytest.mark.parametrize("name", PROVIDER_SIDE)
async def test_gateway_to_provider_is(
    name: str,
    start_tls_provider: Callable[[bool], Any],
    make_gateway: GatewayFactory,
    dev_pki: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    provider: TlsProvider = await start_tls_provider(name != "SslToServiceNoAuth")
    other_ca = init_pki(tmp_path_factory.mktemp("other-ca")).ca_cert
    tls = _provider_tls(name, provider, dev_pki, other_ca)

    def to_https(registry: dict[str, Any]) -> None:
        for service in registry["services"]:
            if service["code"] == "getState" and service["provider"] == "EE/BUSINESS/producer":
                service["url"] = f"{provider.url}/getState"
                service["tls"] = tls

    client = await make_gateway(ProviderBehaviour(), to_https)
    data = (QUERIES / "getstate.query").read_bytes()
    response = await client.post("/", data=data, headers={"Content-Type": "text/xml"})
    code = _fault_code(await response.read())
    expected = EXPECTED[name] or None
    assert code == expected
    forwarded = [body for _, body in provider.behaviour.received]
    assert forwarded == ([data] if expected is None else [])
