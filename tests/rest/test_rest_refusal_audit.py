"""Refused REST exchanges are audited: request and response records with the fault code and
the request id the client got in ``X-Road-Request-Id`` and the error body's ``detail``."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gateway.audit import AuditRecord, open_audit_store
from tests.rest.conftest import CLIENT, OTHER, SERVICE, SIGNED, RestDeployment
from tests.rest.test_rest_signed import BODY, PATH, _signed

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Request = tuple[str, str, dict[str, str], bytes]


async def _records(gw: RestDeployment, request_id: str) -> list[AuditRecord]:
    store = await open_audit_store(gw.settings.audit)
    try:
        return await store.by_request_id(request_id)
    finally:
        await store.close()


def _invalid_client(gw: RestDeployment) -> Request:
    return "GET", f"/r1/{SERVICE}/pet/1", {"X-Road-Client": "DEV/COM"}, b""


def _access_denied(gw: RestDeployment) -> Request:  # OTHER may only GET /pet/*
    return "POST", PATH, {"X-Road-Client": OTHER, "Content-Type": "application/json"}, BODY


def _unknown_service(gw: RestDeployment) -> Request:
    return "GET", "/r1/DEV/COM/222/TESTSERVICE/nothere/pet/1", {"X-Road-Client": CLIENT}, b""


def _signature_fault(gw: RestDeployment) -> Request:
    signed = _signed(gw, "refused-signed")
    return "POST", PATH, {**signed.headers, "X-Road-Id": "another-id"}, BODY


def _digest_fault(gw: RestDeployment) -> Request:
    signed = _signed(gw, "refused-digest")
    return "POST", PATH, signed.headers, BODY.replace(b"7", b"8")


@pytest.mark.parametrize(
    ("make", "code", "status", "client"),
    [
        (_invalid_client, "Client.InvalidClientIdentifier", 400, None),
        (_access_denied, "Server.ServerProxy.AccessDenied", 500, OTHER),
        (_unknown_service, "Server.ServerProxy.UnknownService", 500, CLIENT),
        (_signature_fault, "Client.InvalidSignatureValue", 400, SIGNED),
        (_digest_fault, "Client.InvalidContentDigest", 400, SIGNED),
    ],
    ids=["invalid-client", "access-denied", "unknown-service", "signature", "content-digest"],
)
async def test_refused_rest_exchange_is_audited_with_its_request_id(
    rest_gateway: RestDeployment,
    make: Callable[[RestDeployment], Request],
    code: str,
    status: int,
    client: str | None,
) -> None:
    method, path, headers, body = make(rest_gateway)
    response = await rest_gateway.client.request(method, path, data=body, headers=headers)
    assert response.status == status, await response.text()
    assert response.headers["X-Road-Error"] == code
    request_id = response.headers["X-Road-Request-Id"]
    assert UUID.fullmatch(request_id)
    assert (await response.json())["detail"] == request_id
    assert rest_gateway.provider.requests == []

    records = await _records(rest_gateway, request_id)
    assert [r.direction for r in records] == ["request", "response"]
    for record in records:
        assert record.request_id == request_id
        assert record.fault_code == code
        assert record.outcome == "fault"
        assert record.protocol == "rest"
        assert record.client == client
        assert record.rest_method == method
    request, answer = records
    assert request.http_status is None and answer.http_status == status
    assert request.size == len(body)
    assert request.signer_thumbprint is None  # nothing was proven about the signer
