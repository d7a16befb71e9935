"""Failures around an exchange: the audit store, a slow provider. The gateway keeps serving."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer
from lxml import etree

from gateway.server import client_server_options, create_client_app
from gateway.settings import Settings
from tests.conformance.conftest import base_registry
from tests.conformance.test_xroad_proxy_vectors import QUERIES, VECTORS
from tests.postgres import PostgresLog, postgres_log
from tests.support import GatewayFactory, ProviderBehaviour

pytestmark = pytest.mark.skipif(
    not VECTORS.is_dir(), reason=f"X-Road proxy test vectors not found at {VECTORS}"
)

HEADERS = {"Content-Type": "text/xml; charset=UTF-8"}
__all__ = ["postgres_log"]  # the fixture, imported for this module


def _code(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(".//faultcode")


@dataclass
class _AuditOutage:
    """One store, and how to take it away and bring it back for real."""

    settings: dict[str, Any]
    take_away: Callable[[], None]
    bring_back: Callable[[], None]


@pytest.fixture(params=["sqlite", "postgres"])
def audit_outage(request: pytest.FixtureRequest, tmp_path: Path) -> _AuditOutage:
    if request.param == "postgres":
        pg: PostgresLog = request.getfixturevalue("postgres_log")
        settings = {"store": "postgres", "dsn": pg.dsn, "postgres_schema": pg.schema}
        # The gateway's database role may no longer log in, and its sessions are killed.
        return _AuditOutage(settings, pg.take_away, pg.bring_back)
    database = tmp_path / "audit.db"
    away = tmp_path / "audit.db.away"
    return _AuditOutage(
        {"path": database}, lambda: database.rename(away), lambda: away.rename(database)
    )


async def test_audit_store_failure_fails_closed_and_recovers(
    make_gateway: GatewayFactory, audit_outage: _AuditOutage
) -> None:
    behaviour = ProviderBehaviour(
        body=(QUERIES / "getstate.answer").read_bytes(), content_type="text/xml"
    )
    client = await make_gateway(behaviour, audit=audit_outage.settings)
    request = (QUERIES / "getstate.query").read_bytes()

    ok = await client.post("/", data=request, headers=HEADERS)
    assert _code(await ok.read()) is None
    assert len(behaviour.received) == 1

    audit_outage.take_away()  # the store is gone: nothing may be forwarded
    for _ in range(2):  # and it stays refused while the store is away
        refused = await client.post("/", data=request, headers=HEADERS)
        assert _code(await refused.read()) == "Server.ClientProxy.LoggingFailed"
    assert len(behaviour.received) == 1

    audit_outage.bring_back()  # the store is back: the gateway recovers, no restart
    again = await client.post("/", data=request, headers=HEADERS)
    assert _code(await again.read()) is None
    assert len(behaviour.received) == 2


async def test_slow_provider_times_out(make_gateway: GatewayFactory) -> None:
    def short_timeout(registry: dict[str, Any]) -> None:
        for service in registry["services"]:
            service["timeout"] = {"connect": 0.2, "total": 0.3}

    behaviour = ProviderBehaviour(
        body=(QUERIES / "getstate.answer").read_bytes(), content_type="text/xml", delay=2
    )
    client = await make_gateway(behaviour, short_timeout)
    response = await client.post(
        "/", data=(QUERIES / "getstate.query").read_bytes(), headers=HEADERS
    )
    assert _code(await response.read()) == "Server.ServerProxy.ServiceFailed.Timeout"


async def test_oversize_request_is_refused(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(ProviderBehaviour())
    huge = b"<a>" + b"x" * (11 * 1024 * 1024) + b"</a>"
    response = await client.post("/", data=io.BytesIO(huge), headers=HEADERS)
    assert _code(await response.read()) == "Client.MessageTooLarge"
    # ... and the next legitimate request is still served.
    ok = await client.post("/", data=(QUERIES / "missing-body.query").read_bytes(), headers=HEADERS)
    assert _code(await ok.read()) == "Client.MissingBody"


async def test_too_many_attachments_are_refused(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(ProviderBehaviour())
    envelope = (QUERIES / "getstate.query").read_bytes()
    parts = [b"--B\r\nContent-Type: text/xml\r\n\r\n" + envelope]
    parts += [b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nx"] * 40
    body = b"".join(parts) + b"\r\n--B--\r\n"
    response = await client.post(
        "/", data=body, headers={"Content-Type": "multipart/related; boundary=B"}
    )
    assert _code(await response.read()) == "Client.MessageTooLarge"


async def test_header_flood_is_refused_by_the_http_parser(
    dev_pki: Path, tmp_path: Path, aiohttp_client: Any
) -> None:
    (tmp_path / "registry").mkdir()
    registry = base_registry(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
        }
    )
    server = TestServer(create_client_app(settings), **client_server_options(settings))
    client = await aiohttp_client(server)
    flood = {f"X-Flood-{i}": "x" for i in range(150)}
    assert (await client.post("/", data=b"<a/>", headers=flood)).status == 400
    long_header = {"X-Long": "x" * 9000}
    assert (await client.post("/", data=b"<a/>", headers=long_header)).status == 400
    ok = await client.post("/", data=(QUERIES / "missing-body.query").read_bytes(), headers=HEADERS)
    assert _code(await ok.read()) == "Client.MissingBody"
