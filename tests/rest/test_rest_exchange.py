"""REST exchanges through obmin: the pr-rest examples, both dialects, errors, large bodies."""

from __future__ import annotations

import io
import json

from gateway.audit import open_audit_store
from tests.rest.conftest import CLIENT, OTHER, SERVICE, RestDeployment

R1 = f"/r1/{SERVICE}"


async def _records(deployment: RestDeployment, message_id: str) -> list[object]:
    store = await open_audit_store(deployment.settings.audit)
    try:
        return list(await store.query(message_id=message_id))
    finally:
        await store.close()


async def test_get_as_in_the_spec(rest_gateway: RestDeployment) -> None:
    response = await rest_gateway.client.get(
        f"{R1}/pet/findByStatus?status=available",
        headers={
            "X-Road-Client": CLIENT,
            "X-Road-Id": "msg-get-1",
            "accept": "application/json",
            "Connection": "keep-alive",
            "X-Road-Request-Hash": "client-forged",
        },
    )
    assert response.status == 200
    assert await response.json() == [{"id": 1, "name": "doggie", "status": "available"}]
    assert response.headers["X-Road-Client"] == CLIENT
    assert response.headers["X-Road-Service"] == SERVICE
    assert response.headers["X-Road-Id"] == "msg-get-1"
    assert len(response.headers["X-Road-Request-Id"]) == 36
    assert len(response.headers["X-Road-Request-Hash"]) == 88  # base64 of SHA-512
    method, path_qs, headers, _ = rest_gateway.provider.requests[0]
    assert (method, path_qs) == ("GET", "/v2/pet/findByStatus?status=available")
    assert headers["X-Road-Client"] == CLIENT
    assert "X-Road-Request-Hash" not in headers or headers["X-Road-Request-Hash"] != "client-forged"
    records = await _records(rest_gateway, "msg-get-1")
    assert [r.direction for r in records] == ["request", "response"]  # type: ignore[attr-defined]
    assert records[0].rest_method == "GET"  # type: ignore[attr-defined]
    assert records[0].rest_path == "/pet/findByStatus"  # type: ignore[attr-defined]
    assert records[1].http_status == 200  # type: ignore[attr-defined]


async def test_post_put_delete_and_generated_id(rest_gateway: RestDeployment) -> None:
    pet = {"id": 0, "name": "doggie", "photoUrls": ["string"], "status": "available"}
    for method in ("POST", "PUT"):
        response = await rest_gateway.client.request(
            method, f"{R1}/pets", json=pet, headers={"X-Road-Client": CLIENT}
        )
        assert response.status == 200
        assert await response.json() == pet
        assert response.headers["X-Provider"] == "petstore"
        assert response.headers["X-Road-Id"].startswith("DEV-")  # generated INSTANCE-UUID
    response = await rest_gateway.client.delete(f"{R1}/pet/1", headers={"X-Road-Client": CLIENT})
    assert response.status == 200


async def test_provider_errors_pass_through_untouched(rest_gateway: RestDeployment) -> None:
    response = await rest_gateway.client.put(
        f"{R1}/pet/findByStatus", headers={"X-Road-Client": CLIENT}
    )
    assert response.status == 405
    assert "X-Road-Error" not in response.headers
    assert (await response.json())["error"] == "Method Not Allowed"
    found = await rest_gateway.client.get(f"{R1}/pet/99", headers={"X-Road-Client": CLIENT})
    assert found.status == 404 and "X-Road-Error" not in found.headers


async def test_provider_cannot_forge_gateway_headers(rest_gateway: RestDeployment) -> None:
    response = await rest_gateway.client.get(f"{R1}/pet/1", headers={"X-Road-Client": CLIENT})
    assert response.status == 200
    assert response.headers.getall("X-Road-Request-Hash") != ["forged"]
    assert len(response.headers.getall("X-Road-Request-Hash")) == 1


async def test_redirects_are_returned_not_followed(rest_gateway: RestDeployment) -> None:
    response = await rest_gateway.client.get(
        f"{R1}/moved", headers={"X-Road-Client": CLIENT}, allow_redirects=False
    )
    assert response.status == 302
    assert response.headers["Location"] == "http://127.0.0.1:9/elsewhere"
    assert len(rest_gateway.provider.requests) == 1


async def test_gateway_errors_json_and_xml(rest_gateway: RestDeployment) -> None:
    unknown = await rest_gateway.client.get(
        "/r1/DEV/COM/222/TESTSERVICE/nosuch/x", headers={"X-Road-Client": CLIENT}
    )
    assert unknown.status == 500  # a server-side fault (SPEC 3.2, PR-REST 4.6)
    assert unknown.headers["X-Road-Error"] == "Server.ServerProxy.UnknownService"
    body = await unknown.json()
    assert body["type"] == "Server.ServerProxy.UnknownService"
    assert body["detail"] == unknown.headers["X-Road-Request-Id"]

    as_xml = await rest_gateway.client.get(
        f"{R1}/pet/1", headers={"X-Road-Client": "DEV/COM/222/NOSUCH", "Accept": "application/xml"}
    )
    assert as_xml.status == 500
    text = await as_xml.text()
    assert text.startswith("<?xml") and "<type>Server.ClientProxy.UnknownMember</type>" in text

    missing = await rest_gateway.client.get(f"{R1}/pet/1")
    assert missing.headers["X-Road-Error"] == "Client.MissingHeaderField"
    bad_id = await rest_gateway.client.get(
        f"{R1}/pet/1", headers={"X-Road-Client": "DEV/COM/2 2/X"}
    )
    assert bad_id.headers["X-Road-Error"] == "Client.InvalidClientIdentifier"
    encoded = await rest_gateway.client.get(
        "/r1/DEV/COM/222/TEST%2FSERVICE/petstore/pet/1", headers={"X-Road-Client": CLIENT}
    )
    assert encoded.headers["X-Road-Error"] == "Client.InvalidServiceIdentifier"


async def test_endpoint_rights_and_path_traversal(rest_gateway: RestDeployment) -> None:
    allowed = await rest_gateway.client.get(f"{R1}/pet/1", headers={"X-Road-Client": OTHER})
    assert allowed.status == 200
    denied = await rest_gateway.client.delete(f"{R1}/pet/1", headers={"X-Road-Client": OTHER})
    assert denied.status == 500
    assert denied.headers["X-Road-Error"] == "Server.ServerProxy.AccessDenied"
    sneaky = await rest_gateway.client.get(
        f"{R1}/pet/%2e%2e/findByStatus", headers={"X-Road-Client": OTHER}
    )
    assert sneaky.headers["X-Road-Error"] == "Server.ServerProxy.AccessDenied"
    escape = await rest_gateway.client.get(
        f"{R1}/%2e%2e/%2e%2e/admin", headers={"X-Road-Client": CLIENT}
    )
    assert escape.headers["X-Road-Error"] == "Client.InvalidRequest"


async def test_uxp_dialect_and_subject_audit(rest_gateway: RestDeployment) -> None:
    response = await rest_gateway.client.get(
        "/restapi/pet/1",
        headers={
            "uxp-client": CLIENT,
            "UXP-SERVICE": SERVICE,
            "Uxp-Id": "uxp-1",
            "Uxp-Subject-Id": "UA-1234567890",
            "Uxp-Purpose-Ids": "SOC-17, TAX-2",
        },
    )
    assert response.status == 200
    assert len(response.headers["Uxp-Transaction-Id"]) == 36
    assert response.headers["Uxp-Queryid"] == "uxp-1"
    records = await _records(rest_gateway, "uxp-1")
    assert records[0].dialect == "uxp"  # type: ignore[attr-defined]
    assert records[0].subject_id == "UA-1234567890"  # type: ignore[attr-defined]
    assert records[0].purpose_ids == ("SOC-17", "TAX-2")  # type: ignore[attr-defined]
    error = await rest_gateway.client.get("/restapi/pet/1", headers={"uxp-client": CLIENT})
    assert error.headers["Uxp-Error"] == "Client.MissingHeaderField"


async def test_large_body_is_streamed_through(rest_gateway: RestDeployment) -> None:
    payload = json.dumps({"blob": "x" * (5 * 1024 * 1024)}).encode()
    response = await rest_gateway.client.post(
        f"{R1}/pets",
        data=io.BytesIO(payload),
        headers={"X-Road-Client": CLIENT, "Content-Type": "application/json"},
    )
    assert response.status == 200
    assert len(await response.read()) == len(payload)
    assert rest_gateway.provider.requests[-1][3] == len(payload)


async def test_oversize_rest_body_is_refused(rest_gateway: RestDeployment) -> None:
    big = io.BytesIO(b"x" * (65 * 1024 * 1024))
    response = await rest_gateway.client.post(
        f"{R1}/pets", data=big, headers={"X-Road-Client": CLIENT}
    )
    assert response.status == 400
    assert response.headers["X-Road-Error"] == "Client.MessageTooLarge"
    assert rest_gateway.provider.requests == []


async def test_rate_limited_client_gets_429_with_retry_after(rest_gateway: RestDeployment) -> None:
    headers = {"X-Road-Client": "DEV/COM/222/LIMITED"}
    assert (await rest_gateway.client.get(f"{R1}/pet/1", headers=headers)).status == 200
    limited = await rest_gateway.client.get(f"{R1}/pet/1", headers=headers)
    assert limited.status == 429
    assert limited.headers["X-Road-Error"] == "Client.RateLimited"
    assert int(limited.headers["Retry-After"]) >= 1
