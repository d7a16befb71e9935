"""TLS towards the provider: verification with the registry's CA and a client certificate
(X-Road's SslToService* cases)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from adapters.client import build_soap_request
from adapters.example_provider import create_provider_app
from gateway.reload import reload_registry
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from registry.identifiers import ClientId
from security import init_pki
from security.pki_certs import issue_tls_client_cert, issue_tls_server_cert
from tests.gateway.conftest import registry_for
from tests.gateway.test_signed_exchange import SERVICE, _body

LEGACY = ClientId("SEVDEIR-TEST", "GOV", "12345678", "LEGACY")


FAILED = "Server.ServerProxy.ServiceFailed.SslAuthenticationFailed"


@dataclass
class Deployment:
    """A gateway in front of one HTTPS provider, for the tests below."""

    state: GatewayState
    client: TestClient[web.Request, web.Application]

    async def fault(self) -> str | None:
        request = etree.tostring(build_soap_request(LEGACY, SERVICE, _body()))
        response = await self.client.post("/", data=request, headers={"Content-Type": "text/xml"})
        return etree.fromstring(await response.read()).findtext(".//faultcode")


@contextlib.asynccontextmanager
async def _provider(
    dev_pki: Path, directory: Path, *, client_certificates: bool
) -> AsyncIterator[str]:
    """The example provider over HTTPS with a certificate of the development CA (asking
    for a client certificate of that CA when ``client_certificates``): its URL."""
    server_cert = issue_tls_server_cert(dev_pki, out_dir=directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert.cert_path, server_cert.key_path)
    if client_certificates:
        context.verify_mode = ssl.CERT_REQUIRED  # the provider wants the gateway's certificate
        context.load_verify_locations(dev_pki / "ca" / "ca.crt")
    provider = TestServer(create_provider_app())
    await provider.start_server(ssl=context)
    try:
        url = str(provider.make_url("/soap"))
        assert url.startswith("https://")
        yield url
    finally:
        await provider.close()


@pytest.fixture
async def https_provider(dev_pki: Path, tmp_path: Path) -> AsyncIterator[str]:
    """The provider of `_provider`, asking for no client certificate."""
    async with _provider(dev_pki, tmp_path / "provider", client_certificates=False) as url:
        yield url


async def _deploy(
    dev_pki: Path,
    directory: Path,
    url: str,
    tls: dict[str, Any],
    aiohttp_client: Callable[..., Any],
    keys: dict[str, Any] | None = None,
) -> Deployment:
    registry = registry_for(dev_pki / "ca" / "ca.crt", "http://unused")
    registry["members"][0]["subsystems"].append({"code": "LEGACY", "auth": "none"})
    registry["access"][0]["clients"].append(str(LEGACY))
    registry["services"][0]["url"] = url
    registry["services"][0]["tls"] = tls
    (directory / "registry").mkdir(parents=True)
    (directory / "registry" / "r.yaml").write_text(yaml.safe_dump(registry))
    settings = Settings.model_validate(
        {
            "registry_dir": directory / "registry",
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
                **(keys or {}),
            },
            "audit": {"path": directory / "audit.db"},
            "allow_unauthenticated_clients": True,
        }
    )
    state = GatewayState(settings)
    return Deployment(state, await aiohttp_client(create_client_app(settings, state)))


async def test_tls_to_the_provider(
    dev_pki: Path, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    gateway_cert = issue_tls_client_cert(
        dev_pki, ClientId.parse("SEVDEIR-TEST/GOV/00000000/GW"), out_dir=tmp_path / "gw"
    )
    other_ca = init_pki(tmp_path / "other")
    cases = {
        "good": {
            "ca_certificates": [str(dev_pki / "ca" / "ca.crt")],
            "client_certificate": str(gateway_cert.cert_path),
            "client_key": str(gateway_cert.key_path),
        },
        "no-client-cert": {"ca_certificates": [str(dev_pki / "ca" / "ca.crt")]},
        "untrusted-provider": {
            "ca_certificates": [str(other_ca.ca_cert)],
            "client_certificate": str(gateway_cert.cert_path),
            "client_key": str(gateway_cert.key_path),
        },
    }
    results = {}
    async with _provider(dev_pki, tmp_path / "provider", client_certificates=True) as url:
        for name, tls in cases.items():
            gateway = await _deploy(dev_pki, tmp_path / name, url, tls, aiohttp_client)
            results[name] = await gateway.fault()
    assert results["good"] is None
    assert results["untrusted-provider"] == FAILED
    # With TLS 1.3 the provider refuses a missing client certificate after the client's
    # side of the handshake is done, by resetting the connection: nothing tells it from a
    # network failure, so either fault is right, and nothing reached the provider.
    assert results["no-client-cert"] in (FAILED, "Server.ServerProxy.ServiceFailed.NetworkError")


async def test_encrypted_client_key_towards_the_provider(
    dev_pki: Path, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    passphrase = b"provider key passphrase"
    gateway_cert = issue_tls_client_cert(
        dev_pki,
        ClientId.parse("SEVDEIR-TEST/GOV/00000000/GW"),
        out_dir=tmp_path / "gw",
        passphrase=passphrase,
    )
    assert b"ENCRYPTED" in gateway_cert.key_path.read_bytes()
    secret = tmp_path / "passphrase.txt"
    secret.write_bytes(passphrase + b"\n")
    tls = {
        "ca_certificates": [str(dev_pki / "ca" / "ca.crt")],
        "client_certificate": str(gateway_cert.cert_path),
        "client_key": str(gateway_cert.key_path),
    }
    results = {}
    async with _provider(dev_pki, tmp_path / "provider", client_certificates=True) as url:
        for name, keys in (("with-passphrase", {"passphrase_file": secret}), ("without", {})):
            keys = {"passphrase_env": "TEST_UNSET_OBMIN_PASSPHRASE", **keys}
            gateway = await _deploy(dev_pki, tmp_path / name, url, tls, aiohttp_client, keys)
            results[name] = await gateway.fault()
    assert results["with-passphrase"] is None
    # No passphrase configured: the service's TLS settings cannot be used (and OpenSSL
    # did not stop the gateway to ask for one on the terminal).
    assert results["without"] == "Server.ClientProxy.InternalError"


async def test_a_ca_file_replaced_in_place_is_read_again_at_the_reload(
    dev_pki: Path, tmp_path: Path, https_provider: str, aiohttp_client: Callable[..., Any]
) -> None:
    """The provider's CA certificate renewed under the same file name: the running
    registry keeps the context it built, the reload reads the file again."""
    ca_file = tmp_path / "provider-ca.pem"
    ca_file.write_bytes(init_pki(tmp_path / "old").ca_cert.read_bytes())  # not the right CA
    tls = {"ca_certificates": [str(ca_file)]}
    gateway = await _deploy(dev_pki, tmp_path / "gw", https_provider, tls, aiohttp_client)
    assert await gateway.fault() == FAILED
    ca_file.write_bytes((dev_pki / "ca" / "ca.crt").read_bytes())  # renewed in place
    assert await gateway.fault() == FAILED  # the snapshot in force keeps what it read
    assert (await reload_registry(gateway.state, "admin")).ok
    assert await gateway.fault() is None


async def test_the_services_cas_replace_the_systems(
    dev_pki: Path,
    tmp_path: Path,
    https_provider: str,
    aiohttp_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service that names its CAs trusts those alone, not the system's as well; one that
    names none trusts the system's (here the development CA, through SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dev_pki / "ca" / "ca.crt"))
    other = init_pki(tmp_path / "other").ca_cert
    pinned = await _deploy(
        dev_pki, tmp_path / "pinned", https_provider, {"ca_certificates": [str(other)]},
        aiohttp_client,
    )  # fmt: skip
    assert await pinned.fault() == FAILED
    system = await _deploy(dev_pki, tmp_path / "system", https_provider, {}, aiohttp_client)
    assert await system.fault() is None
