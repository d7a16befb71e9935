"""A gateway on loopback in front of the real example provider, with signing clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.example_provider import create_provider_app
from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import MemberId
from security import IssuedCert, issue_member_cert

CLIENT_MEMBER = MemberId("SEVDEIR-TEST", "GOV", "12345678")
OTHER_MEMBER = MemberId("SEVDEIR-TEST", "GOV", "11112222")
PROVIDER = "SEVDEIR-TEST/GOV/87654321/REGISTRY"
WSDL_FILE = (
    Path(__file__).resolve().parents[2]
    / "config"
    / "example"
    / "registry"
    / "wsdl"
    / "person-registry.wsdl"
)


@pytest.fixture(scope="session")
def member_certs(dev_pki: Path) -> dict[str, IssuedCert]:
    """Signing certificates of the client member and of an unrelated member."""
    return {
        "client": issue_member_cert(dev_pki, CLIENT_MEMBER, name="Ministry of Social Policy"),
        "other": issue_member_cert(dev_pki, OTHER_MEMBER, name="Another Agency"),
    }


def registry_for(ca_cert: Path, provider_url: str) -> dict[str, Any]:
    """SEVDEIR-TEST with a strict client, a standard (zeep) client and the example provider."""
    return {
        "instance": "SEVDEIR-TEST",
        "trust_anchors": [{"name": "dev-ca", "certificate": str(ca_cert)}],
        "members": [
            {
                "id": str(CLIENT_MEMBER),
                "name": "Ministry of Social Policy",
                "subsystems": [
                    {"code": "CLIENT", "auth": "signature", "signature_policy": "strict"},
                    {"code": "WSCLIENT", "auth": "signature", "signature_policy": "standard"},
                    {"code": "NOACCESS", "auth": "signature"},
                ],
            },
            {"id": str(OTHER_MEMBER), "name": "Another Agency"},
            {
                "id": "SEVDEIR-TEST/GOV/87654321",
                "name": "State Registry Service",
                "subsystems": [{"code": "REGISTRY"}],
            },
        ],
        "services": [
            {
                "provider": PROVIDER,
                "code": "getPerson",
                "version": "v1",
                "type": "soap",
                "url": f"{provider_url}/soap",
                "timeout": {"connect": 2, "total": 5},
                "wsdl": str(WSDL_FILE),
            },
        ],
        "access": [
            {
                "provider": PROVIDER,
                "service": "getPerson",
                "clients": [f"{CLIENT_MEMBER}/CLIENT", f"{CLIENT_MEMBER}/WSCLIENT"],
            },
        ],
    }


@dataclass
class Deployment:
    """A running gateway and what tests need to talk to it."""

    client: TestClient[web.Request, web.Application]
    settings: Settings
    pki: Path


@pytest.fixture
async def deployment(
    dev_pki: Path,
    member_certs: dict[str, IssuedCert],
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> Deployment:
    provider: TestServer = await aiohttp_server(create_provider_app())
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = registry_for(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
    (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": registry_dir,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
        }
    )
    client = await aiohttp_client(create_client_app(settings))
    return Deployment(client=client, settings=settings, pki=dev_pki)
