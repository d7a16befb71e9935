"""A gateway for the X-Road vectors: instance EE, unauthenticated consumer, test provider."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.server import create_client_app
from gateway.settings import Settings
from tests.support import GatewayFactory, ProviderBehaviour, provider_app

PRODUCER_SERVICES = ("getState", "test", "testQuery", "generateMtom")


def base_registry(ca_cert: Path, provider_url: str) -> dict[str, Any]:
    """The registry of the upstream proxy tests, in obmin's YAML shape."""
    consumer = "EE/BUSINESS/consumer"
    return {
        "instance": "EE",
        "trust_anchors": [{"name": "dev-ca", "certificate": str(ca_cert)}],
        "members": [
            {
                "id": consumer,
                "name": "Consumer",
                "auth": "none",
                "subsystems": [{"code": "subsys1", "auth": "none"}],
            },
            {"id": "EE/BUSINESS/producer", "name": "Producer", "subsystems": [{"code": "subsys2"}]},
        ],
        "services": [
            {
                "provider": "EE/BUSINESS/producer/subsys2",
                "code": "persons",
                "type": "rest",
                "url": f"{provider_url}/persons",
            },
            *(
                {
                    "provider": "EE/BUSINESS/producer",
                    "code": code,
                    "type": "soap",
                    "url": f"{provider_url}/{code}",
                    "timeout": {"connect": 2, "total": 5},
                }
                for code in PRODUCER_SERVICES
            ),
            {
                "provider": "EE/BUSINESS/producer/subsys2",
                "code": "getState",
                "type": "soap",
                "url": f"{provider_url}/subsys2/getState",
            },
        ],
        "access": [
            {
                "provider": "EE/BUSINESS/producer/subsys2",
                "service": "persons",
                "clients": [consumer, f"{consumer}/subsys1"],
            },
            *(
                {
                    "provider": "EE/BUSINESS/producer",
                    "service": code,
                    "clients": [consumer, f"{consumer}/subsys1"],
                }
                for code in PRODUCER_SERVICES
            ),
            {
                "provider": "EE/BUSINESS/producer/subsys2",
                "service": "getState",
                "clients": [consumer, f"{consumer}/subsys1"],
            },
        ],
    }


@pytest.fixture
def make_gateway(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> GatewayFactory:
    async def factory(
        behaviour: ProviderBehaviour,
        tweak: Callable[[dict[str, Any]], None] | None = None,
        settings_extra: dict[str, Any] | None = None,
        *,
        audit: dict[str, Any] | None = None,
    ) -> TestClient[web.Request, web.Application]:
        provider: TestServer = await aiohttp_server(provider_app(behaviour))
        registry = base_registry(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
        registry = copy.deepcopy(registry)
        if tweak is not None:
            tweak(registry)
        registry_dir = tmp_path / "registry"
        registry_dir.mkdir()
        (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
        settings = Settings.model_validate(
            {
                "registry_dir": registry_dir,
                "keys": {
                    "signing_certificate": dev_pki / "gateway" / "sign.crt",
                    "signing_key": dev_pki / "gateway" / "sign.key",
                },
                "audit": audit or {"path": tmp_path / "audit.db"},
                "allow_unauthenticated_clients": True,
                **(settings_extra or {}),
            }
        )
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            create_client_app(settings)
        )
        return client

    return factory
