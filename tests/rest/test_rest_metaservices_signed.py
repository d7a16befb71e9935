"""REST metaservices over HTTP from a *signed* client (RFC 9421): listMethods, allowedMethods,
getOpenAPI, ``GET /listClients`` and Trembita's ``GET /wsdl?...`` are authenticated by the
signature and audited with the signer, like any other call."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from http_message_signatures import HTTPMessageSigner, algorithms
from lxml import etree

from gateway.audit import AuditRecord, open_audit_store
from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import MemberId
from registry.snapshot import certificate_thumbprint
from security import IssuedCert, issue_member_cert, load_certificate, load_private_key
from security.httpsig_algs import http_keyid
from tests.rest.test_rest_signed import _Keys, _Request

REPO = Path(__file__).resolve().parents[2]
WSDL = REPO / "config" / "example" / "registry" / "wsdl" / "person-registry.wsdl"
SIGNED = "DEV/COM/222/SIGNED"
PROVIDER = "DEV/COM/333/REGISTRY"
OPENAPI = """\
openapi: 3.0.3
info: {title: People, version: "1"}
servers:
  - url: https://people.internal.example:8443/api/v1
paths:
  /people/{id}:
    get:
      responses: {"200": {description: a person}}
  /people:
    post:
      responses: {"201": {description: created}}
"""
WSDL_QUERY = (
    "xRoadInstance=DEV&memberClass=COM&memberCode=333&subsystemCode=REGISTRY"
    "&serviceCode=getPerson&serviceVersion=v1"
)
_ids = itertools.count()


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    signer: IssuedCert

    def signed(self, target: str) -> dict[str, str]:
        """Headers of a GET of ``target`` signed by the SIGNED subsystem's key."""
        cert = load_certificate(self.signer.cert_path)
        request = _Request(
            "GET",
            str(self.client.make_url(target)),
            {"X-Road-Client": SIGNED, "X-Road-Id": f"meta-{next(_ids)}"},
        )
        HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=_Keys(load_private_key(self.signer.key_path), cert),
        ).sign(
            request,
            key_id=http_keyid(cert),
            created=datetime.now(UTC),
            covered_component_ids=("@method", "@target-uri", "x-road-client", "x-road-id"),
        )
        return request.headers

    async def records(self, request_id: str) -> list[AuditRecord]:
        store = await open_audit_store(self.settings.audit)
        try:
            return await store.by_request_id(request_id)
        finally:
            await store.close()


@pytest.fixture
async def gateway(dev_pki: Path, tmp_path: Path, aiohttp_client: Callable[..., Any]) -> Gateway:
    signer = issue_member_cert(
        dev_pki,
        MemberId("DEV", "COM", "222"),
        name="Signing member",
        out_dir=tmp_path / "signer",
        key_type="ed25519",
    )
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    (registry_dir / "openapi").mkdir()  # documents live beside, not among, registry files
    (registry_dir / "openapi" / "people.yaml").write_text(OPENAPI, encoding="utf-8")
    registry = {
        "instance": "DEV",
        "trust_anchors": [{"name": "dev", "certificate": str(dev_pki / "ca" / "ca.crt")}],
        "members": [
            {
                "id": "DEV/COM/222",
                "name": "Signing member",
                "subsystems": [{"code": "SIGNED", "signing_certificates": [str(signer.cert_path)]}],
            },
            {"id": "DEV/COM/333", "name": "Registry", "subsystems": [{"code": "REGISTRY"}]},
        ],
        "services": [
            {
                "provider": PROVIDER,
                "code": "people",
                "type": "openapi",
                "url": "https://people.internal.example:8443/api/v1",
                "openapi": "openapi/people.yaml",
            },
            {
                "provider": PROVIDER,
                "code": "getPerson",
                "version": "v1",
                "type": "soap",
                "url": "http://soap.internal.example:8090/soap",
                "wsdl": str(WSDL),
            },
            {
                "provider": PROVIDER,
                "code": "secret",
                "type": "rest",
                "url": "http://127.0.0.1:9",
            },
        ],
        "access": [
            {
                "provider": PROVIDER,
                "service": "people",
                "clients": [SIGNED],
                "endpoints": [{"method": "GET", "path": "/people/*"}],
            },
        ],
    }
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
    return Gateway(await aiohttp_client(create_client_app(settings)), settings, signer)


def _assert_audited_ok(records: list[AuditRecord], request_id: str, gw: Gateway) -> None:
    thumbprint = certificate_thumbprint(load_certificate(gw.signer.cert_path))
    assert [r.direction for r in records] == ["request", "response"]
    for record in records:
        assert record.request_id == request_id
        assert record.outcome == "ok" and record.fault_code is None
        assert record.client == SIGNED
        assert record.auth_mode == "signature"
        assert record.signer_thumbprint == thumbprint
        assert record.signature_value_digest
        assert record.rest_method == "GET"
    assert records[1].http_status == 200


async def _get(gw: Gateway, target: str, **extra: str) -> tuple[Any, bytes, str]:
    response = await gw.client.get(target, headers={**gw.signed(target), **extra})
    body = await response.read()
    assert response.status == 200, body
    return response, body, response.headers["X-Road-Request-Id"]


async def test_list_and_allowed_methods_signed_and_audited(gateway: Gateway) -> None:
    for name, expected in (
        ("listMethods", ["people", "secret"]),
        ("allowedMethods", ["people"]),
    ):
        response, body, request_id = await _get(gateway, f"/r1/{PROVIDER}/{name}")
        codes = sorted(s["service_code"] for s in yaml.safe_load(body)["service"])
        assert codes == expected, name
        records = await gateway.records(request_id)
        _assert_audited_ok(records, request_id, gateway)
        assert records[0].service == f"{PROVIDER}/{name}"
        assert "Signature" in response.headers  # the gateway signs the metaservice's answer


async def test_get_openapi_signed_over_http_hides_the_provider_address(gateway: Gateway) -> None:
    target = f"/r1/{PROVIDER}/getOpenAPI?serviceCode=people"
    response, body, request_id = await _get(gateway, target)
    assert response.headers["Content-Type"].startswith("text/yaml")
    document = yaml.safe_load(body)
    assert document["servers"] == [{"url": "/api/v1"}]
    assert set(document["paths"]) == {"/people/{id}", "/people"}
    assert b"internal" not in body and b"8443" not in body
    records = await gateway.records(request_id)
    _assert_audited_ok(records, request_id, gateway)
    assert records[0].service == f"{PROVIDER}/getOpenAPI"


async def test_trembita_wsdl_query_signed_over_http(gateway: Gateway) -> None:
    response, body, request_id = await _get(gateway, f"/wsdl?{WSDL_QUERY}")
    assert response.headers["Content-Type"].startswith("text/xml")
    wsdl = etree.fromstring(body)
    assert etree.QName(wsdl).localname == "definitions"
    locations = {
        a.get("location")
        for a in wsdl.iter(
            "{http://schemas.xmlsoap.org/wsdl/soap/}address",
            "{http://schemas.xmlsoap.org/wsdl/soap12/}address",
        )
    }
    assert locations and not any("internal" in (loc or "") for loc in locations)
    records = await gateway.records(request_id)
    _assert_audited_ok(records, request_id, gateway)
    assert records[0].rest_path == "/wsdl"


async def test_list_clients_signed_over_http(gateway: Gateway) -> None:
    _, body, request_id = await _get(gateway, "/listClients", Accept="application/json")
    assert b"SIGNED" in body and b"REGISTRY" in body
    _assert_audited_ok(await gateway.records(request_id), request_id, gateway)


@pytest.mark.parametrize(
    "target",
    [
        f"/r1/{PROVIDER}/listMethods",
        f"/r1/{PROVIDER}/getOpenAPI?serviceCode=people",
        f"/wsdl?{WSDL_QUERY}",
        "/listClients",
    ],
)
async def test_metaservice_with_a_broken_signature_is_refused_and_audited(
    gateway: Gateway, target: str
) -> None:
    headers = gateway.signed(target)
    headers["X-Road-Id"] = "not-the-signed-id"
    response = await gateway.client.get(target, headers=headers)
    assert response.status == 400
    assert response.headers["X-Road-Error"] == "Client.InvalidSignatureValue"
    request_id = response.headers["X-Road-Request-Id"]
    records = await gateway.records(request_id)
    assert [(r.direction, r.fault_code) for r in records] == [
        ("request", "Client.InvalidSignatureValue"),
        ("response", "Client.InvalidSignatureValue"),
    ]
    assert all(r.client == SIGNED and r.signer_thumbprint is None for r in records)


async def test_unsigned_metaservice_call_from_a_signing_client_is_refused(
    gateway: Gateway,
) -> None:
    response = await gateway.client.get(
        f"/r1/{PROVIDER}/getOpenAPI?serviceCode=people", headers={"X-Road-Client": SIGNED}
    )
    assert response.headers["X-Road-Error"] == "Client.MissingSignature"
    assert (await gateway.records(response.headers["X-Road-Request-Id"]))[0].fault_code == (
        "Client.MissingSignature"
    )
