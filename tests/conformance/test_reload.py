"""Registry reload under load: validate, swap atomically, refuse invalid, never drop a request."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from gateway.admin import create_admin_app
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from tests.conformance.conftest import base_registry
from tests.conformance.test_xroad_proxy_vectors import QUERIES, VECTORS
from tests.support import ProviderBehaviour, provider_app

pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no X-Road vectors at {VECTORS}")

TOKEN = "test-admin-token"
HEADERS = {"Content-Type": "text/xml; charset=UTF-8"}


def _code(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(".//faultcode")


async def test_twenty_reloads_under_continuous_load(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    answer = (QUERIES / "getstate.answer").read_bytes()
    provider: TestServer = await aiohttp_server(
        provider_app(ProviderBehaviour(body=answer, content_type="text/xml"))
    )
    base = base_registry(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry_file = registry_dir / "registry.yaml"

    def write(grant_test: bool) -> None:
        registry = copy.deepcopy(base)
        if not grant_test:
            registry["access"] = [a for a in registry["access"] if a["service"] != "test"]
        registry_file.write_text(yaml.safe_dump(registry), encoding="utf-8")

    write(grant_test=False)
    settings = Settings.model_validate(
        {
            "registry_dir": registry_dir,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
            "allow_unauthenticated_clients": True,
            "admin_tokens": [
                {
                    "name": "ops",
                    "roles": ["admin"],
                    "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                }
            ],
        }
    )
    state = GatewayState(settings)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_client_app(settings, state)
    )
    admin: TestClient[web.Request, web.Application] = await aiohttp_client(create_admin_app(state))
    auth = {"Authorization": f"Bearer {TOKEN}"}

    getstate = (QUERIES / "getstate.query").read_bytes()
    not_allowed = (QUERIES / "notAllowed.query").read_bytes()  # consumer -> producer/test
    stop = asyncio.Event()
    outcomes: list[str | None] = []

    async def load() -> None:
        while not stop.is_set():
            response = await client.post("/", data=getstate, headers=HEADERS)
            outcomes.append(_code(await response.read()))

    loader = asyncio.create_task(load())
    granted = False
    for i in range(20):
        if i % 2 == 0:  # a valid registry that flips the right on service "test"
            granted = not granted
            write(grant_test=granted)
            reply = await admin.post("/admin/v1/registry/reload", headers=auth)
            assert reply.status == 200, await reply.text()
        else:  # an invalid registry: refused, the one in force stays
            registry_file.write_text("members: [unclosed\n", encoding="utf-8")
            reply = await admin.post("/admin/v1/registry/reload", headers=auth)
            assert reply.status == 422
            assert "registry.yaml" in (await reply.json())["error"]
            ready = await (await admin.get("/readyz")).json()
            assert ready["details"]["registry"]["last_reload"]["ok"] is False
        probe = await client.post("/", data=not_allowed, headers=HEADERS)
        denied = _code(await probe.read()) == "Server.ServerProxy.AccessDenied"
        assert denied is not granted, f"after reload {i}"
        await asyncio.sleep(0.02)
    stop.set()
    await loader
    assert len(outcomes) > 20
    assert all(code is None for code in outcomes), set(outcomes)

    metrics = (await (await admin.get("/metrics")).read()).decode()
    assert 'obmin_registry_reloads_total{outcome="ok",trigger="admin"} 10.0' in metrics
    assert 'obmin_registry_reloads_total{outcome="refused",trigger="admin"} 10.0' in metrics


async def test_reload_needs_an_admin_token(
    dev_pki: Path, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = base_registry(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    (registry_dir / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": registry_dir,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
            "admin_tokens": [
                {
                    "name": "auditor",
                    "roles": ["auditor"],
                    "sha256": hashlib.sha256(b"auditor-token").hexdigest(),
                }
            ],
        }
    )
    state = GatewayState(settings)
    await aiohttp_client(create_client_app(settings, state))
    admin = await aiohttp_client(create_admin_app(state))
    assert (await admin.post("/admin/v1/registry/reload")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await admin.post("/admin/v1/registry/reload", headers=wrong)).status == 401
    auditor = {"Authorization": "Bearer auditor-token"}
    assert (await admin.post("/admin/v1/registry/reload", headers=auditor)).status == 403
