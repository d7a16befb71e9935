"""``X-Road-Request-Hash`` as X-Road defines it (PR-REST 4.3), recomputed by the client from
the bytes it sent (`tests.rest.wire.request_hash`, written from the spec, not from obmin)."""

from __future__ import annotations

import base64
import hashlib

from tests.rest.conftest import CLIENT, SERVICE, RestDeployment
from tests.rest.wire import request_hash, send, verify_answer

R1 = f"/r1/{SERVICE}"


async def test_get_without_body_hashes_the_head_only(rest_gateway: RestDeployment) -> None:
    answer = await send(
        rest_gateway.client,
        "GET",
        f"{R1}/pet/findByStatus?status=available&x=%2Fy",
        [("X-Road-Client", CLIENT), ("accept", "application/json"), ("X-Trace", " a b ")],
    )
    assert answer.status == 200
    assert answer["X-Road-Request-Hash"] == request_hash(answer)
    # Spelled out once: method, target as sent, kept headers in order, then the added ones.
    head = (
        f"GET\r\n{R1}/pet/findByStatus?status=available&x=%2Fy\r\n"
        f"X-Road-Client:{CLIENT}\r\naccept:application/json\r\nX-Trace:a b\r\n"
        f"X-Road-Request-Id:{answer['X-Road-Request-Id']}\r\nX-Road-Id:{answer['X-Road-Id']}\r\n"
    )
    expected = base64.b64encode(hashlib.sha512(head.encode()).digest()).decode()
    assert answer["X-Road-Request-Hash"] == expected
    verify_answer(answer, rest_gateway.pki)


async def test_body_is_hashed_and_client_id_is_not_appended(rest_gateway: RestDeployment) -> None:
    body = b'{"id": 3, "name": "hashed"}'
    answer = await send(
        rest_gateway.client,
        "POST",
        f"{R1}/pets",
        [
            ("X-Road-Client", CLIENT),
            ("x-road-id", "hash-1"),
            ("Content-Type", "application/json"),
            ("User-Agent", "client/1.0"),  # filtered, so not hashed
            ("X-Road-Request-Hash", "client-forged"),  # set by the gateway, so not hashed
        ],
        body,
    )
    assert answer.status == 200, answer.body
    assert answer["X-Road-Id"] == "hash-1"
    assert answer["X-Road-Request-Hash"] == request_hash(answer)
    head = (
        f"POST\r\n{R1}/pets\r\nX-Road-Client:{CLIENT}\r\nx-road-id:hash-1\r\n"
        f"Content-Type:application/json\r\nX-Road-Request-Id:{answer['X-Road-Request-Id']}\r\n"
    )
    inner = hashlib.sha512(head.encode()).digest() + hashlib.sha512(body).digest()
    assert (
        answer["X-Road-Request-Hash"] == base64.b64encode(hashlib.sha512(inner).digest()).decode()
    )
    verify_answer(answer, rest_gateway.pki)


async def test_every_byte_of_the_request_counts(rest_gateway: RestDeployment) -> None:
    """Two requests differing in one header value, or in the case of a header name, hash
    differently; the same request sent twice differs by its request id."""
    base = [("X-Road-Client", CLIENT), ("X-Road-Id", "same"), ("X-Custom", "1")]
    first = await send(rest_gateway.client, "GET", f"{R1}/pet/1", base)
    other = await send(rest_gateway.client, "GET", f"{R1}/pet/1", [*base[:2], ("X-Custom", "2")])
    cased = await send(rest_gateway.client, "GET", f"{R1}/pet/1", [*base[:2], ("x-custom", "1")])
    hashes = {a["X-Road-Request-Hash"] for a in (first, other, cased)}
    assert len(hashes) == 3
    for answer in (first, other, cased):
        assert answer["X-Road-Request-Hash"] == request_hash(answer)


async def test_uxp_dialect_uses_its_own_names(rest_gateway: RestDeployment) -> None:
    answer = await send(
        rest_gateway.client,
        "GET",
        "/restapi/pet/1",
        [("Uxp-Client", CLIENT), ("Uxp-Service", SERVICE), ("X-Road-Request-Id", "forged")],
    )
    assert answer.status == 200
    assert answer.get("X-Road-Request-Hash") is None
    assert answer["Uxp-Request-Hash"] == request_hash(answer, dialect="uxp")
    forwarded = {k.lower(): v for k, v in rest_gateway.provider.requests[-1][2].items()}
    assert "x-road-request-id" not in forwarded  # a gateway's header, whatever the dialect
    verify_answer(answer, rest_gateway.pki, dialect="uxp")
