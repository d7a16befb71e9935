"""Registry reload: an exchange in flight finishes under the snapshot it started with, the
next one uses the new registry; the file watch (``registry_watch_seconds``) reloads too."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.client import SoapAnswer, XRoadSoapClient, build_soap_request
from adapters.example_provider import create_provider_app
from gateway.admin import create_admin_app
from gateway.reload import reload_registry
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert, TrustStore, load_certificate, load_private_key
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.gateway.test_signed_exchange import _body

TOKEN = "reload-token"
SERVICE = ServiceId(ClientId.parse(PROVIDER), "getPerson", "v1")
_ids = itertools.count()


@dataclass
class Provider:
    """The example provider behind a gate: each call waits until the gate is open."""

    server: TestServer
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    @property
    def url(self) -> str:
        return str(self.server.make_url("/soap"))


async def _provider(aiohttp_server: Callable[..., Awaitable[TestServer]], open_: bool) -> Provider:
    app = create_provider_app()
    holder: list[Provider] = []

    @web.middleware
    async def gated(request: web.Request, handler: Any) -> web.StreamResponse:
        provider = holder[0]
        provider.calls += 1
        provider.arrived.set()
        await provider.gate.wait()
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(gated)
    provider = Provider(await aiohttp_server(app))
    if open_:
        provider.gate.set()
    holder.append(provider)
    return provider


@dataclass
class Setup:
    client: TestClient[web.Request, web.Application]
    admin: TestClient[web.Request, web.Application]
    state: GatewayState
    registry: dict[str, Any]
    file: Path
    sdk: dict[str, XRoadSoapClient]

    def write(self, change: Callable[[dict[str, Any]], None] | None = None) -> None:
        registry = copy.deepcopy(self.registry)
        if change is not None:
            change(registry)
        self.file.write_text(yaml.safe_dump(registry), encoding="utf-8")

    async def reload(self) -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        reply = await self.admin.post("/admin/v1/registry/reload", headers=auth)
        assert reply.status == 200, await reply.text()

    async def call(self, subsystem: str = "CLIENT") -> SoapAnswer:
        sdk = self.sdk[subsystem]
        client = ClientId.parse(f"{CLIENT_MEMBER}/{subsystem}")
        envelope = build_soap_request(client, SERVICE, _body(), message_id=f"r-{next(_ids)}")
        return await sdk.send(sdk.sign(envelope))


async def _setup(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    provider_url: str,
    watch: float | None = None,
    **settings_extra: Any,
) -> Setup:
    registry = registry_for(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    registry["services"][0]["url"] = provider_url
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    file = registry_dir / "registry.yaml"
    file.write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": registry_dir,
            "registry_watch_seconds": watch,
            **settings_extra,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
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
    client = await aiohttp_client(create_client_app(settings, state))
    admin = await aiohttp_client(create_admin_app(state))
    cert = member_certs["client"]
    sdk = {
        name: XRoadSoapClient(
            str(client.make_url("/")),
            key=load_private_key(cert.key_path),
            certificate=load_certificate(cert.cert_path),
            gateway_trust=TrustStore([load_certificate(dev_pki / "ca" / "ca.crt")]),
            session=client.session,
        )
        for name in ("CLIENT", "NOACCESS")
    }
    return Setup(client, admin, state, registry, file, sdk)


def _fault(answer: SoapAnswer) -> str | None:
    return None if not answer.is_fault else answer.envelope.root.findtext(".//faultcode")


async def test_in_flight_exchange_keeps_the_old_url_the_next_uses_the_new(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    old = await _provider(aiohttp_server, open_=False)
    new = await _provider(aiohttp_server, open_=True)
    setup = await _setup(dev_pki, tmp_path, member_certs, aiohttp_client, old.url)

    in_flight = asyncio.create_task(setup.call())
    async with asyncio.timeout(10):
        await old.arrived.wait()  # the exchange is at the provider

    def move(registry: dict[str, Any]) -> None:
        registry["services"][0]["url"] = new.url

    setup.write(move)
    await setup.reload()
    after = await setup.call()  # answered while the first exchange still waits
    assert _fault(after) is None and after.verified is not None
    assert (old.calls, new.calls) == (1, 1)
    assert not in_flight.done()

    old.gate.set()
    async with asyncio.timeout(10):
        answer = await in_flight
    assert _fault(answer) is None and answer.verified is not None  # old snapshot, old URL
    assert (old.calls, new.calls) == (1, 1)


async def test_in_flight_exchange_keeps_its_rights_the_next_is_refused(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    provider = await _provider(aiohttp_server, open_=False)
    setup = await _setup(dev_pki, tmp_path, member_certs, aiohttp_client, provider.url)

    in_flight = asyncio.create_task(setup.call())
    async with asyncio.timeout(10):
        await provider.arrived.wait()

    def revoke(registry: dict[str, Any]) -> None:
        registry["access"][0]["clients"] = [f"{CLIENT_MEMBER}/WSCLIENT"]

    setup.write(revoke)
    await setup.reload()
    refused = await setup.call()
    assert _fault(refused) == "Server.ServerProxy.AccessDenied"

    provider.gate.set()
    async with asyncio.timeout(10):
        answer = await in_flight
    assert _fault(answer) is None and answer.verified is not None
    assert provider.calls == 1


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll the gateway's state: the watch task gives no event to wait on."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - polling the state, there is no event
            await asyncio.sleep(0.02)


async def test_file_watch_reloads_on_change_and_refuses_an_invalid_registry(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    provider = await _provider(aiohttp_server, open_=True)
    setup = await _setup(dev_pki, tmp_path, member_certs, aiohttp_client, provider.url, watch=0.05)
    state = setup.state
    assert _fault(await setup.call("NOACCESS")) == "Server.ServerProxy.AccessDenied"
    assert state.last_reload is None
    await asyncio.sleep(0.1)  # unchanged files: no reload
    assert state.last_reload is None

    def grant(registry: dict[str, Any]) -> None:
        registry["access"][0]["clients"].append(f"{CLIENT_MEMBER}/NOACCESS")

    setup.write(grant)
    await _until(lambda: state.last_reload is not None)
    assert state.last_reload is not None
    assert (state.last_reload.ok, state.last_reload.trigger) == (True, "watch")
    answer = await setup.call("NOACCESS")
    assert _fault(answer) is None and answer.verified is not None

    digest = state.env.registry.digest if state.env else None
    first = state.last_reload
    setup.file.write_text("members: [unclosed\n", encoding="utf-8")
    await _until(lambda: state.last_reload is not first)
    assert state.last_reload is not None
    assert (state.last_reload.ok, state.last_reload.trigger) == (False, "watch")
    assert "registry.yaml" in (state.last_reload.error or "")
    ready = await (await setup.admin.get("/readyz")).json()
    assert ready["details"]["registry"]["last_reload"]["ok"] is False
    assert ready["details"]["registry"]["digest"] == digest  # the registry in force stays
    answer = await setup.call("NOACCESS")
    assert _fault(answer) is None


async def test_without_watch_a_changed_file_changes_nothing(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    provider = await _provider(aiohttp_server, open_=True)
    setup = await _setup(dev_pki, tmp_path, member_certs, aiohttp_client, provider.url)

    def grant(registry: dict[str, Any]) -> None:
        registry["access"][0]["clients"].append(f"{CLIENT_MEMBER}/NOACCESS")

    setup.write(grant)
    await asyncio.sleep(0.2)
    assert setup.state.last_reload is None
    assert _fault(await setup.call("NOACCESS")) == "Server.ServerProxy.AccessDenied"


async def test_an_outdated_registry_refuses_exchanges_until_a_reload_succeeds(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    """registry_max_outdated_seconds: once reloads have refused the files for longer, every
    exchange is refused (and audited) with OutdatedRegistry and /readyz is 503; a reload
    that succeeds serves again. Before the limit, the registry in force is served."""
    provider = await _provider(aiohttp_server, open_=True)
    setup = await _setup(
        dev_pki, tmp_path, member_certs, aiohttp_client, provider.url,
        registry_max_outdated_seconds=0.3,
    )  # fmt: skip
    setup.write(lambda registry: registry["services"][0].update(type="ftp"))  # invalid
    refused = await reload_registry(setup.state, "admin")
    assert not refused.ok
    assert _fault(await setup.call()) is None  # within the limit: the registry in force
    ready = await setup.admin.get("/readyz")
    registry_details = (await ready.json())["details"]["registry"]
    assert ready.status == 200 and registry_details["files_refused_since"] is not None
    assert registry_details["outdated"] is False
    assert not (await reload_registry(setup.state, "admin")).ok  # the first refusal counts
    await asyncio.sleep(0.4)

    outdated = "Server.ClientProxy.OutdatedRegistry"
    answer = await setup.call()
    assert _fault(answer) == outdated
    assert "registry is outdated" in (answer.envelope.root.findtext(".//faultstring") or "")
    rest = await setup.client.get(
        f"/r1/{PROVIDER}/getPerson", headers={"X-Road-Client": f"{CLIENT_MEMBER}/CLIENT"}
    )
    assert rest.status == 503 and rest.headers["X-Road-Error"] == outdated
    listed = await setup.client.get(
        "/listClients", headers={"X-Road-Client": f"{CLIENT_MEMBER}/CLIENT"}
    )
    assert listed.status == 503 and listed.headers["X-Road-Error"] == outdated
    ready = await setup.admin.get("/readyz")
    assert ready.status == 503 and (await ready.json())["details"]["registry"]["outdated"]
    env = setup.state.env
    assert env is not None
    refusals = [r for r in await env.audit.query(limit=100) if r.fault_code == outdated]
    assert len(refusals) == 6  # three exchanges, each with its request and response record
    assert provider.calls == 1  # nothing was forwarded while outdated

    setup.write()  # the files are valid again
    assert (await reload_registry(setup.state, "admin")).ok
    assert _fault(await setup.call()) is None
    ready = await setup.admin.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["details"]["registry"]["files_refused_since"] is None
