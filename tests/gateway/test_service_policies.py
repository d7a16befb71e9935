"""Per-service data from the registry, through the real pipeline: a disabled service's notice
reaches the client (SOAP faultstring, REST message), and the audit body policy (none, digest,
plain) decides what the SQLite audit store keeps of each body."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from adapters.client import XRoadSoapClient, build_soap_request
from adapters.example_provider import create_provider_app
from gateway.audit import AuditRecord, open_audit_store
from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert, TrustStore, load_certificate, load_private_key
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.gateway.test_signed_exchange import _body
from tests.support import ProviderBehaviour, provider_app

NOTICE = "Replaced by getPerson v2 from 1 March; see the integration guide"
LEGACY = f"{CLIENT_MEMBER}/LEGACY"
REST_ANSWER = b'{"people": ["Olena Kovalenko"]}'


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    sdk: XRoadSoapClient

    async def records(self, message_id: str) -> list[AuditRecord]:
        store = await open_audit_store(self.settings.audit)
        try:
            return await store.query(message_id=message_id)
        finally:
            await store.close()

    def stored_bodies(self, request_id: str) -> list[bytes | None]:
        """The body column of the records, read from the SQLite file itself."""
        with sqlite3.connect(self.settings.audit.path) as db:
            rows = db.execute("SELECT canonical, body FROM records ORDER BY seq").fetchall()
        return [body for canonical, body in rows if request_id.encode() in canonical]


@pytest.fixture
async def gateway(
    dev_pki: Path,
    tmp_path: Path,
    member_certs: dict[str, IssuedCert],
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> Gateway:
    soap: TestServer = await aiohttp_server(create_provider_app())
    rest: TestServer = await aiohttp_server(
        provider_app(ProviderBehaviour(body=REST_ANSWER, content_type="application/json"))
    )
    registry = registry_for(dev_pki / "ca" / "ca.crt", str(soap.make_url("")).rstrip("/"))
    registry["members"][0]["subsystems"].append({"code": "LEGACY", "auth": "none"})
    template = registry["services"][0]

    def soap(**values: object) -> dict[str, Any]:
        return {**copy.deepcopy(template), **values}  # no shared dicts: YAML aliases refused

    registry["services"] = [
        soap(version=f"v-{policy}", audit_body=policy) for policy in ("none", "digest", "plain")
    ]
    registry["services"].append(soap(version="v0", disabled=True, disabled_notice=NOTICE))
    registry["services"].append(soap(version="v00", disabled=True))
    for policy in ("none", "digest", "plain"):
        registry["services"].append(
            {
                "provider": PROVIDER,
                "code": f"people-{policy}",
                "type": "rest",
                "url": str(rest.make_url("/api")),
                "audit_body": policy,
            }
        )
    registry["services"].append(
        {
            "provider": PROVIDER,
            "code": "people-old",
            "type": "rest",
            "url": str(rest.make_url("/api")),
            "disabled": True,
            "disabled_notice": NOTICE,
        }
    )
    registry["access"][0]["clients"].append(LEGACY)
    registry["access"].extend(
        {"provider": PROVIDER, "service": f"people-{suffix}", "clients": [LEGACY]}
        for suffix in ("none", "digest", "plain", "old")
    )
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
            "allow_unauthenticated_clients": True,
        }
    )
    client = await aiohttp_client(create_client_app(settings))
    cert = member_certs["client"]
    sdk = XRoadSoapClient(
        str(client.make_url("/")),
        key=load_private_key(cert.key_path),
        certificate=load_certificate(cert.cert_path),
        gateway_trust=TrustStore([load_certificate(dev_pki / "ca" / "ca.crt")]),
        session=client.session,
    )
    return Gateway(client, settings, sdk)


def _service(version: str) -> ServiceId:
    return ServiceId(ClientId.parse(PROVIDER), "getPerson", version)


def _digest(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("v0", f"service {PROVIDER}/getPerson/v0 is disabled: {NOTICE}"),
        ("v00", f"service {PROVIDER}/getPerson/v00 is disabled"),
    ],
)
async def test_disabled_soap_service_notice_is_the_faultstring(
    gateway: Gateway, version: str, message: str
) -> None:
    client = ClientId.parse(f"{CLIENT_MEMBER}/CLIENT")
    envelope = build_soap_request(client, _service(version), _body(), message_id=f"d-{version}")
    answer = await gateway.sdk.send(gateway.sdk.sign(envelope))
    assert answer.is_fault
    root = answer.envelope.root
    assert root.findtext(".//faultcode") == "Server.ServerProxy.ServiceDisabled"
    assert root.findtext(".//faultstring") == message
    records = await gateway.records(f"d-{version}")
    assert [r.fault_code for r in records] == ["Server.ServerProxy.ServiceDisabled"] * 2


async def test_disabled_rest_service_notice_is_the_error_message(gateway: Gateway) -> None:
    for accept, read in (
        ("application/json", lambda body: json.loads(body)["message"]),
        ("application/xml", lambda body: etree.fromstring(body).findtext("message")),
    ):
        response = await gateway.client.get(
            f"/r1/{PROVIDER}/people-old/list",
            headers={"X-Road-Client": LEGACY, "Accept": accept},
        )
        assert response.status == 503
        assert response.headers["X-Road-Error"] == "Server.ServerProxy.ServiceDisabled"
        expected = f"service {PROVIDER}/people-old is disabled: {NOTICE}"
        assert read(await response.read()) == expected


@pytest.mark.parametrize("policy", ["none", "digest", "plain"])
async def test_soap_audit_body_policy_decides_what_is_stored(gateway: Gateway, policy: str) -> None:
    client = ClientId.parse(f"{CLIENT_MEMBER}/CLIENT")
    envelope = build_soap_request(
        client, _service(f"v-{policy}"), _body(), message_id=f"body-{policy}"
    )
    sent = gateway.sdk.sign(envelope)
    answer = await gateway.sdk.send(sent)
    assert not answer.is_fault and answer.verified is not None

    request, response = await gateway.records(f"body-{policy}")
    for record, data in ((request, sent), (response, answer.raw)):
        assert record.body_policy == policy
        assert record.size == len(data)
        if policy == "none":  # the size only: a digest of a short body could be guessed
            assert record.body_digest is None
        else:
            assert record.body_digest == _digest(data)
        assert record.body == (data if policy == "plain" else None)
    expected = [sent, answer.raw] if policy == "plain" else [None, None]
    assert gateway.stored_bodies(request.request_id) == expected


@pytest.mark.parametrize(
    ("policy", "recorded"),
    # REST bodies may be of any size: `plain` keeps the digest only, until stored REST bodies
    # exist (gateway/rest_exchange.py) -- storing less than asked, never more.
    [("none", "none"), ("digest", "digest"), ("plain", "digest")],
)
async def test_rest_audit_body_policy_decides_what_is_stored(
    gateway: Gateway, policy: str, recorded: str
) -> None:
    sent = b'{"query": "Kovalenko"}'
    response = await gateway.client.post(
        f"/r1/{PROVIDER}/people-{policy}/search",
        data=sent,
        headers={
            "X-Road-Client": LEGACY,
            "X-Road-Id": f"rest-body-{policy}",
            "Content-Type": "application/json",
        },
    )
    assert response.status == 200, await response.text()
    assert await response.read() == REST_ANSWER

    request, answer = await gateway.records(f"rest-body-{policy}")
    for record, data in ((request, sent), (answer, REST_ANSWER)):
        assert record.body_policy == recorded
        assert record.size == len(data)
        assert record.body_digest == (None if recorded == "none" else _digest(data))
        assert record.body is None
    assert gateway.stored_bodies(request.request_id) == [None, None]
