"""Per-service data from the registry, through the real pipeline: a disabled service's notice
reaches the client (SOAP faultstring, REST message), and the audit body policy (none, digest,
encrypted, plain) decides what the SQLite audit store keeps of each body, up to
``audit.max_stored_body_bytes``."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import sqlite3
import uuid
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
from gateway.audit import (
    AuditError,
    AuditRecord,
    BodyBinding,
    BodyKeyring,
    BodyStorage,
    open_audit_store,
    write_body_key,
)
from gateway.errors import fault_for
from gateway.reload import reload_registry
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.state import GatewayState
from registry import RegistryError
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert, TrustStore, load_certificate, load_private_key
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.gateway.test_signed_exchange import _body
from tests.support import ProviderBehaviour, provider_app

NOTICE = "Replaced by getPerson v2 from 1 March; see the integration guide"
LEGACY = f"{CLIENT_MEMBER}/LEGACY"
REST_ANSWER = b'{"people": ["Olena Kovalenko"]}'
POLICIES = ("none", "digest", "encrypted", "plain")
MAX_STORED = 3 * 1024 * 1024  # above the spool's memory threshold: stored bodies come from disk


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    sdk: XRoadSoapClient

    @property
    def keyring(self) -> BodyKeyring:
        assert self.settings.audit.body_keys is not None
        return BodyKeyring.from_settings(self.settings.audit.body_keys)

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

    registry["services"] = [soap(version=f"v-{policy}", audit_body=policy) for policy in POLICIES]
    registry["services"].append(soap(version="v0", disabled=True, disabled_notice=NOTICE))
    registry["services"].append(soap(version="v00", disabled=True))
    for policy in POLICIES:
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
        for suffix in (*POLICIES, "old")
    )
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
    write_body_key(tmp_path / "keys" / "b1.key")
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {
                "path": tmp_path / "audit.db",
                "body_keys": {"current": "b1", "keys": {"b1": tmp_path / "keys" / "b1.key"}},
                "max_stored_body_bytes": MAX_STORED,
            },
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


def _stored(gateway: Gateway, record: AuditRecord, stored: bytes | None) -> bytes | None:
    """What the stored body says in clear: itself, or the envelope opened for ``record``."""
    if record.body_policy != "encrypted" or stored is None:
        return stored
    assert stored.startswith(b"OBE\x01")  # an envelope, never the body itself
    return gateway.keyring.open(stored, BodyBinding.of(record))


@pytest.mark.parametrize("policy", POLICIES)
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
        if policy in ("plain", "encrypted"):
            assert record.body is not None and _stored(gateway, record, record.body) == data
        else:
            assert record.body is None
    stored = gateway.stored_bodies(request.request_id)
    if policy in ("plain", "encrypted"):
        opened = [_stored(gateway, r, b) for r, b in zip((request, response), stored, strict=True)]
        assert opened == [sent, answer.raw]
        if policy == "encrypted":
            assert all(sent not in body and b"Kovalenko" not in body for body in stored if body)
    else:
        assert stored == [None, None]


@pytest.mark.parametrize("policy", POLICIES)
async def test_rest_audit_body_policy_decides_what_is_stored(gateway: Gateway, policy: str) -> None:
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
    stored = gateway.stored_bodies(request.request_id)
    for record, data, raw in ((request, sent, stored[0]), (answer, REST_ANSWER, stored[1])):
        assert record.body_policy == policy
        assert record.size == len(data)
        assert record.body_digest == (None if policy == "none" else _digest(data))
        if policy in ("plain", "encrypted"):
            assert _stored(gateway, record, record.body) == data
            assert _stored(gateway, record, raw) == data
        else:
            assert record.body is None and raw is None
    if policy == "encrypted":
        assert all(b"Kovalenko" not in raw for raw in stored if raw)


@pytest.mark.parametrize("policy", ["plain", "encrypted"])
async def test_rest_bodies_are_stored_up_to_the_configured_size(
    gateway: Gateway, policy: str
) -> None:
    """A spooled body (on disk) up to ``audit.max_stored_body_bytes`` is stored; a larger one
    keeps its digest only, and its record says so (``body_policy: digest``)."""
    for name, size in (("fits", MAX_STORED), ("over", MAX_STORED + 1)):
        sent = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        response = await gateway.client.put(
            f"/r1/{PROVIDER}/people-{policy}/upload",
            data=io.BytesIO(sent),
            headers={
                "X-Road-Client": LEGACY,
                "X-Road-Id": f"big-{policy}-{name}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status == 200, await response.text()
        request, answer = await gateway.records(f"big-{policy}-{name}")
        assert request.size == size and request.body_digest == _digest(sent)
        if name == "fits":
            assert request.body_policy == policy
            assert _stored(gateway, request, request.body) == sent
        else:
            assert request.body_policy == "digest" and request.body is None
            assert gateway.stored_bodies(request.request_id)[0] is None
        assert answer.body_policy == policy  # the small answer is stored all the same


async def test_encrypted_without_body_keys_is_refused_at_start_and_on_reload(
    dev_pki: Path, tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    """Fail closed, and say so before any exchange: a registry with a service under
    ``encrypted`` and no ``audit.body_keys`` stops the gateway from starting, and a reload
    to such a registry is refused (the one in force stays), naming the service."""
    registry = registry_for(dev_pki / "ca" / "ca.crt", "http://127.0.0.1:9")
    directory = tmp_path / "registry"
    directory.mkdir()
    file = directory / "r.yaml"
    secret = {**copy.deepcopy(registry["services"][0]), "version": "v9", "audit_body": "encrypted"}
    file.write_text(yaml.safe_dump({**registry, "services": [*registry["services"], secret]}))
    settings = Settings.model_validate(
        {
            "registry_dir": directory,
            "keys": {
                "signing_certificate": dev_pki / "gateway" / "sign.crt",
                "signing_key": dev_pki / "gateway" / "sign.key",
            },
            "audit": {"path": tmp_path / "audit.db"},
        }
    )
    runner = web.AppRunner(create_client_app(settings))
    try:
        with pytest.raises(RegistryError, match=rf"audit\.body_keys.*{PROVIDER}/getPerson/v9"):
            await runner.setup()  # the app's start: what `obmin serve` does first
    finally:
        await runner.cleanup()

    file.write_text(yaml.safe_dump(registry))  # without it, the gateway starts
    state = GatewayState(settings)
    await aiohttp_client(create_client_app(settings, state))
    assert state.env is not None
    in_force = state.env.registry
    file.write_text(yaml.safe_dump({**registry, "services": [*registry["services"], secret]}))
    outcome = await reload_registry(state, "admin")
    assert not outcome.ok
    assert outcome.error is not None and f"{PROVIDER}/getPerson/v9" in outcome.error
    assert state.env.registry is in_force


async def test_a_draft_under_encrypted_without_keys_fails_closed() -> None:
    """Should an exchange still meet ``encrypted`` without a keyring, its record fails with
    LoggingFailed rather than keep the body in clear or drop it silently."""
    storage = BodyStorage(keyring=None)
    with pytest.raises(AuditError, match=r"audit\.body_keys is not configured") as caught:
        await storage.fields_of(b"<secret/>", "encrypted", str(uuid.uuid4()), "request")
    assert fault_for(caught.value).code == "LoggingFailed"
    plain = await storage.fields_of(b"<open/>", "plain", str(uuid.uuid4()), "request")
    assert plain["body"] == b"<open/>"
