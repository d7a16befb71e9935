"""Refused exchanges are audited: a request and a response record with the fault code and the
request id the client sees (SOAP ``faultDetail``, REST ``X-Road-Request-Id``)."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from adapters.client import build_soap_request
from adapters.demo import DEMO_NS
from adapters.example_provider import create_provider_app
from gateway.audit import AuditRecord, open_audit_store
from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import ClientId, ServiceId
from security import IssuedCert, load_certificate, load_private_key, sign_soap
from tests.gateway.conftest import CLIENT_MEMBER, PROVIDER, registry_for
from tests.gateway.test_signed_exchange import _body

XRD = "{http://x-road.eu/xsd/xroad.xsd}"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LIMIT = 64 * 1024
SERVICE = ServiceId(ClientId.parse(PROVIDER), "getPerson", "v1")
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


class Gateway:
    """A gateway with a small request limit in front of the example provider."""

    def __init__(self, client: TestClient[web.Request, web.Application], settings: Settings):
        self.client = client
        self.settings = settings

    async def records(self, request_id: str) -> list[AuditRecord]:
        store = await open_audit_store(self.settings.audit)
        try:
            return await store.by_request_id(request_id)
        finally:
            await store.close()


@pytest.fixture
async def gateway(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> Gateway:
    provider: TestServer = await aiohttp_server(create_provider_app())
    registry = registry_for(dev_pki / "ca" / "ca.crt", str(provider.make_url("")).rstrip("/"))
    registry["services"].append(
        {"provider": PROVIDER, "code": "people", "type": "rest", "url": str(provider.make_url(""))}
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
            "limits": {"max_request_bytes": LIMIT},
        }
    )
    return Gateway(await aiohttp_client(create_client_app(settings)), settings)


def _signed(cert: IssuedCert, client: str, service: ServiceId = SERVICE) -> bytes:
    body = _body()
    body.tag = f"{{{DEMO_NS}}}{service.service_code}"
    envelope = build_soap_request(
        ClientId.parse(f"{CLIENT_MEMBER}/{client}"), service, body, message_id="refused-1"
    )
    signed = sign_soap(
        envelope,
        key=load_private_key(cert.key_path),
        certificate=load_certificate(cert.cert_path),
        profile="strict",
        now=datetime.now(UTC),
    )
    return etree.tostring(signed)


def _invalid_soap(cert: IssuedCert) -> bytes:
    return b"<notsoap/>"


def _access_denied(cert: IssuedCert) -> bytes:
    return _signed(cert, "NOACCESS")


def _unknown_service(cert: IssuedCert) -> bytes:
    return _signed(cert, "CLIENT", ServiceId(ClientId.parse(PROVIDER), "noSuchService", "v1"))


def _signature_fault(cert: IssuedCert) -> bytes:
    tampered = _signed(cert, "CLIENT").replace(b">1234567890<", b">1234567891<")
    assert b">1234567891<" in tampered
    return tampered


def _oversize(cert: IssuedCert) -> bytes:
    signed = _signed(cert, "CLIENT")
    return signed + b" " * LIMIT  # a real request, padded past the limit


def _assert_audited(records: list[AuditRecord], request_id: str, code: str) -> None:
    assert [r.direction for r in records] == ["request", "response"]
    for record in records:
        assert record.request_id == request_id
        assert record.fault_code == code
        assert record.outcome == "fault"


@pytest.mark.parametrize(
    ("make", "code", "identified"),
    [
        (_invalid_soap, "Client.InvalidSoap", False),
        (_access_denied, "Server.ServerProxy.AccessDenied", True),
        (_unknown_service, "Server.ServerProxy.UnknownService", True),
        (_signature_fault, "Client.InvalidSignatureValue", True),
        (_oversize, "Client.MessageTooLarge", False),
    ],
    ids=["invalid-soap", "access-denied", "unknown-service", "signature", "oversize"],
)
async def test_refused_soap_exchange_is_audited_with_its_request_id(
    gateway: Gateway,
    member_certs: dict[str, IssuedCert],
    make: Callable[[IssuedCert], bytes],
    code: str,
    identified: bool,
) -> None:
    data = make(member_certs["client"])
    response = await gateway.client.post("/", data=io.BytesIO(data), headers=HEADERS)
    assert response.status == 200
    root = etree.fromstring(await response.read())
    assert root.findtext(".//faultcode") == code
    request_id = root.findtext(f".//{XRD}faultDetail")
    assert request_id is not None and UUID.fullmatch(request_id), request_id

    records = await gateway.records(request_id)
    _assert_audited(records, request_id, code)
    request, answer = records
    assert request.protocol == "soap" and request.http_status is None
    assert answer.http_status == 200
    if identified:  # the header was read: the records say who called what
        assert request.client is not None and request.client.startswith(f"{CLIENT_MEMBER}/")
        assert request.message_id == "refused-1"
    else:
        assert request.client is None and request.service is None


async def test_oversize_request_with_content_length_is_audited(gateway: Gateway) -> None:
    """Refused from the Content-Length alone, before a byte of the body is read."""
    response = await gateway.client.post("/", data=b"x" * (LIMIT + 1), headers=HEADERS)
    root = etree.fromstring(await response.read())
    assert root.findtext(".//faultcode") == "Client.MessageTooLarge"
    request_id = root.findtext(f".//{XRD}faultDetail")
    assert request_id is not None and UUID.fullmatch(request_id)
    records = await gateway.records(request_id)
    _assert_audited(records, request_id, "Client.MessageTooLarge")
    assert records[0].size == 0
    # Nothing of the body was read: no digest (not the empty body's), policy none.
    assert records[0].body_digest is None and records[0].body_policy == "none"


def _assert_incomplete(request: AuditRecord) -> None:
    """An oversize body, refused as it was read: the size accepted before the refusal and
    no digest, since any digest would be of a prefix, not of the message."""
    assert 0 < request.size <= LIMIT
    assert request.body_digest is None and request.body_policy == "none"


async def test_oversize_soap_request_without_content_length_is_audited_incomplete(
    gateway: Gateway,
) -> None:
    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused while read
        for _ in range(4):
            yield b" " * (LIMIT // 2)

    response = await gateway.client.post("/", data=chunked(), headers=HEADERS)
    root = etree.fromstring(await response.read())
    assert root.findtext(".//faultcode") == "Client.MessageTooLarge"
    request_id = root.findtext(f".//{XRD}faultDetail")
    assert request_id is not None and UUID.fullmatch(request_id)
    records = await gateway.records(request_id)
    _assert_audited(records, request_id, "Client.MessageTooLarge")
    _assert_incomplete(records[0])
    assert records[1].body_digest is not None  # the fault answer is whole: digested


async def test_oversize_rest_request_is_audited(gateway: Gateway) -> None:
    client = f"{CLIENT_MEMBER}/CLIENT"
    response = await gateway.client.post(
        f"/r1/{PROVIDER}/people/person",
        data=io.BytesIO(b"{" + b" " * LIMIT + b"}"),
        headers={"X-Road-Client": client, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert response.headers["X-Road-Error"] == "Client.MessageTooLarge"
    request_id = response.headers["X-Road-Request-Id"]
    assert UUID.fullmatch(request_id)
    assert (await response.json())["detail"] == request_id
    records = await gateway.records(request_id)
    _assert_audited(records, request_id, "Client.MessageTooLarge")
    assert records[0].protocol == "rest" and records[0].client == client
    assert records[1].http_status == response.status
    _assert_incomplete(records[0])
