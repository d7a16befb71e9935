"""A gateway in front of a real petstore-like REST provider (the pr-rest examples' service)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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

    async def thing(request: web.Request) -> web.Response:
        """Every method: HEAD as GET without a body, OPTIONS with Allow, PATCH echoes."""
        body = await record(request)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": "GET, HEAD, PATCH, OPTIONS"})
        if request.method == "PATCH":
            return web.Response(body=body, content_type="application/merge-patch+json")
        return web.Response(body=THING, content_type="application/json")

    async def hop(request: web.Request) -> web.Response:
        """A provider answering with hop-by-hop headers that must not reach the client."""
        await record(request)
        return web.Response(body=b"{}", content_type="application/json", headers=HOP_ANSWER)

    app = web.Application(client_max_size=512 * 1024 * 1024)
    app.router.add_route("*", "/v2/pet/findByStatus", find_by_status)
    app.router.add_route("*", "/v2/pet/{id:\\d+}", pet)
    app.router.add_post("/v2/pets", add)
    app.router.add_put("/v2/pets", add)
    app.router.add_get("/v2/moved", moved)
    app.router.add_route("*", "/v2/things/{id}", thing)
    app.router.add_route("*", "/v2/hop", hop)
    return app


THING = b'{"id": 5, "name": "thing"}'
# Hop-by-hop headers a provider might send: none may reach the client (SPEC 3.2).
HOP_ANSWER = {
    "Connection": "X-Provider-Hop",
    "X-Provider-Hop": "provider-secret",
    "Keep-Alive": "timeout=5",
    "Proxy-Authenticate": "Basic realm=provider",
    "Proxy-Provider-Thing": "1",
    "Trailer": "X-Checksum",
    "Upgrade": "h2c",
    "Server": "provider-httpd/1.0",
    "X-Provider-Kept": "yes",
}


@dataclass
class RestDeployment:
    client: TestClient[web.Request, web.Application]
    provider: ProviderLog
    settings: Settings
    signer: IssuedCert
    pki: Path
    admin: TestClient[web.Request, web.Application]
    signers: dict[str, IssuedCert] = field(default_factory=dict)


SIGNER_KEYS = ("ed25519", "rsa", "ec")


@pytest.fixture(scope="session")
def rest_signers(dev_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, IssuedCert]:
    """Certificates of member DEV/COM/222: one per key type registered (pinned) for SIGNED,
    and ``unregistered``, valid but pinned nowhere."""
    root = tmp_path_factory.mktemp("rest-signers")
    return {
        name: issue_member_cert(
            dev_pki,
            MemberId("DEV", "COM", "222"),
            name=f"REST signer {name}",
            out_dir=root / name,
            key_type=key,  # type: ignore[arg-type]
        )
        for name, key in (*((k, k) for k in SIGNER_KEYS), ("unregistered", "ed25519"))
    }


class RestGatewayFactory(Protocol):
    def __call__(
        self,
        *,
        shared_state: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
    ) -> Awaitable[RestDeployment]: ...


@pytest.fixture
async def rest_gateway(make_rest_gateway: RestGatewayFactory) -> RestDeployment:
    return await make_rest_gateway()


@pytest.fixture
def make_rest_gateway(
    dev_pki: Path,
    tmp_path: Path,
    rest_signers: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> RestGatewayFactory:
    count = 0

    async def factory(
        *,
        shared_state: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
    ) -> RestDeployment:
        nonlocal count
        count += 1
        return await _deploy(
            dev_pki,
            tmp_path / f"gateway-{count}",
            rest_signers,
            aiohttp_client,
            aiohttp_server,
            shared_state or {},
            limits or {},
        )

    return factory


async def _deploy(
    dev_pki: Path,
    tmp_path: Path,
    signers: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
    shared_state: dict[str, Any],
    limits: dict[str, Any],
) -> RestDeployment:
    tmp_path.mkdir(parents=True)  # noqa: ASYNC240 - test setup, nothing is being served yet
    log = ProviderLog()
    signed_cert = signers["ed25519"]
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
                        "signing_certificates": [
                            str(signers[name].cert_path) for name in SIGNER_KEYS
                        ],
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
            "limits": {"max_request_bytes": 64 * 1024 * 1024, **limits},
            "shared_state": shared_state,
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
        signers=signers,
    )
