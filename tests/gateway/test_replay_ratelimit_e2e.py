"""Replayed signed messages and rate limits through the gateway, in memory and over Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from adapters.client import build_soap_request
from adapters.example_provider import create_provider_app
from gateway.server import create_client_app
from gateway.settings import Settings
from security import IssuedCert
from tests.gateway.conftest import registry_for
from tests.gateway.test_signed_exchange import CLIENT, SERVICE, Deployment, _body, _sdk
from tests.support import redis_up


async def _gateway(
    tmp: Path,
    dev_pki: Path,
    provider_url: str,
    aiohttp_client: Callable[..., Any],
    shared: dict[str, Any],
    rate: dict[str, Any] | None = None,
) -> TestClient[web.Request, web.Application]:
    registry = registry_for(dev_pki / "ca" / "ca.crt", provider_url)
    if rate is not None:
        registry["members"][0]["subsystems"][0]["rate_limit"] = rate
    (tmp / "registry").mkdir(parents=True)
    (tmp / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": tmp / "registry",
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp / "audit.db"},
            "shared_state": shared,
        }
    )
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_client_app(settings)
    )
    return client


def _code(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(".//faultcode")


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_replayed_message_is_refused(
    backend: str,
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    if backend == "redis" and not redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    provider: TestServer = await aiohttp_server(create_provider_app())
    url = str(provider.make_url("")).rstrip("/")
    shared = {"backend": backend, "key_prefix": f"obmin-test-{uuid.uuid4()}:"}
    first = await _gateway(tmp_path / "a", dev_pki, url, aiohttp_client, shared)
    second = await _gateway(tmp_path / "b", dev_pki, url, aiohttp_client, shared)
    sdk = _sdk(Deployment(first, None, dev_pki), member_certs["client"])  # type: ignore[arg-type]
    request = sdk.sign(build_soap_request(CLIENT, SERVICE, _body(), message_id=str(uuid.uuid4())))
    headers = {"Content-Type": "text/xml"}
    assert _code(await (await first.post("/", data=request, headers=headers)).read()) is None
    replay = await (await first.post("/", data=request, headers=headers)).read()
    assert _code(replay) == "Client.ReplayedMessage"
    across = await (await second.post("/", data=request, headers=headers)).read()
    if backend == "redis":  # two gateways sharing Redis refuse a replay across them
        assert _code(across) == "Client.ReplayedMessage"
    else:  # each process has its own memory: which is why several processes need Redis
        assert _code(across) is None


async def test_rate_limit(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    provider: TestServer = await aiohttp_server(create_provider_app())
    client = await _gateway(
        tmp_path,
        dev_pki,
        str(provider.make_url("")).rstrip("/"),
        aiohttp_client,
        {"backend": "memory"},
        rate={"per_second": 0.01, "burst": 2},
    )
    sdk = _sdk(Deployment(client, None, dev_pki), member_certs["client"])  # type: ignore[arg-type]
    codes = []
    for _ in range(3):
        request = sdk.sign(build_soap_request(CLIENT, SERVICE, _body()))
        body = await (
            await client.post("/", data=request, headers={"Content-Type": "text/xml"})
        ).read()
        codes.append(_code(body))
    assert codes == [None, None, "Client.RateLimited"]
