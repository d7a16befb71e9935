"""A gateway in front of a real petstore-like REST provider (the pr-rest examples' service)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin import create_admin_app
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from registry.identifiers import MemberId
from security import IssuedCert, issue_member_cert

CLIENT = "DEV/COM/222/TESTCLIENT"
OTHER = "DEV/COM/222/OTHER"
SERVICE = "DEV/COM/222/TESTSERVICE/petstore"
SIGNED = "DEV/COM/222/SIGNED"


@dataclass
class ProviderLog:
    """What the provider received, for assertions."""

    requests: list[tuple[str, str, dict[str, str], int]] = field(default_factory=list)


def petstore(log: ProviderLog) -> web.Application:
    """The provider IS: a few petstore endpoints, errors of its own, a redirect."""
    pets: dict[int, dict[str, object]] = {1: {"id": 1, "name": "doggie", "status": "available"}}

    async def record(request: web.Request) -> bytes:
        body = b""
        size = 0
        digest = hashlib.sha256()
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            digest.update(chunk)
            if size <= 16 << 20:
                body += chunk
        headers = dict(request.headers)
        headers["x-test-body-sha256"] = digest.hexdigest()
        log.requests.append((request.method, request.path_qs, headers, size))
        return body

    async def find_by_status(request: web.Request) -> web.Response:
        await record(request)
        if request.method != "GET":
            return web.json_response({"status": 405, "error": "Method Not Allowed"}, status=405)
        status = request.query.get("status", "")
        return web.json_response([p for p in pets.values() if p["status"] == status])

    async def pet(request: web.Request) -> web.Response:
        await record(request)
        pet_id = int(request.match_info["id"])
        if request.method == "DELETE":
            pets.pop(pet_id, None)
            return web.Response(status=200)
        if pet_id not in pets:
            return web.json_response({"code": 1, "message": "Pet not found"}, status=404)
        return web.json_response(pets[pet_id], headers={"X-Road-Request-Hash": "forged"})

    async def add(request: web.Request) -> web.Response:
        body = await record(request)
        return web.Response(
            body=body, content_type="application/json", headers={"X-Provider": "petstore"}
        )

    async def moved(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPFound("http://127.0.0.1:9/elsewhere")

    app = web.Application(client_max_size=512 * 1024 * 1024)
    app.router.add_route("*", "/v2/pet/findByStatus", find_by_status)
    app.router.add_route("*", "/v2/pet/{id:\\d+}", pet)
    app.router.add_post("/v2/pets", add)
    app.router.add_put("/v2/pets", add)
    app.router.add_get("/v2/moved", moved)
    return app


@dataclass
class RestDeployment:
    client: TestClient[web.Request, web.Application]
    provider: ProviderLog
    settings: Settings
    signer: IssuedCert
    pki: Path
    admin: TestClient[web.Request, web.Application]


@pytest.fixture
async def rest_gateway(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> RestDeployment:
    log = ProviderLog()
    signed_cert = issue_member_cert(
        dev_pki,
        MemberId("DEV", "COM", "222"),
        name="REST signer",
        out_dir=tmp_path / "signer",
        key_type="ed25519",
    )
    server: TestServer = await aiohttp_server(petstore(log))
    registry = {
        "instance": "DEV",
        "trust_anchors": [{"name": "dev", "certificate": str(dev_pki / "ca" / "ca.crt")}],
        "members": [
            {
                "id": "DEV/COM/222",
                "name": "Test member",
                "subsystems": [
                    {"code": "TESTCLIENT", "auth": "none"},
                    {"code": "OTHER", "auth": "none"},
                    {
                        "code": "LIMITED",
                        "auth": "none",
                        "rate_limit": {"per_second": 0.01, "burst": 1},
                    },
                    {"code": "TESTSERVICE"},
                    {
                        "code": "SIGNED",
                        "auth": "signature",
                        "signing_certificates": [str(signed_cert.cert_path)],
                    },
                ],
            },
        ],
        "services": [
            {
                "provider": "DEV/COM/222/TESTSERVICE",
                "code": "petstore",
                "type": "rest",
                "url": str(server.make_url("/v2")),
                "timeout": {"connect": 2, "total": 10},
            },
        ],
        "access": [
            {
                "provider": "DEV/COM/222/TESTSERVICE",
                "service": "petstore",
                "clients": [CLIENT, SIGNED, "DEV/COM/222/LIMITED"],
            },
            {
                "provider": "DEV/COM/222/TESTSERVICE",
                "service": "petstore",
                "clients": [OTHER],
                "endpoints": [{"method": "GET", "path": "/pet/*"}],
            },
        ],
    }
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    (registry_dir / "registry.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": registry_dir,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
                "log_key": dev_pki / "gateway" / "log.key",
            },
            "audit": {
                "path": tmp_path / "audit.db",
                "checkpoint_every_records": 2,
                "checkpoint_interval_seconds": 0.2,
            },
            "admin_tokens": [
                {
                    "name": "auditor",
                    "roles": ["auditor"],
                    "sha256": hashlib.sha256(b"aud").hexdigest(),
                },
                {
                    "name": "tax-auditor",
                    "roles": ["auditor"],
                    "members": ["DEV/COM/999"],
                    "sha256": hashlib.sha256(b"scoped").hexdigest(),
                },
            ],
            "allow_unauthenticated_clients": True,
            "limits": {"max_request_bytes": 64 * 1024 * 1024},
        }
    )
    state = GatewayState(settings)
    client = await aiohttp_client(create_client_app(settings, state))
    admin = await aiohttp_client(create_admin_app(state))
    return RestDeployment(
        client=client,
        provider=log,
        settings=settings,
        signer=signed_cert,
        pki=dev_pki,
        admin=admin,
    )
