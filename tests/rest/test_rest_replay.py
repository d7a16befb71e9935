"""Replayed REST requests through the gateway (SPEC 5.5), in memory and shared over Redis,
in both dialects, with and without a message id, with an RFC 9421 nonce, and with a
malleated ECDSA signature."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.rest.conftest import SERVICE, SIGNED, RestDeployment, RestGatewayFactory
from tests.rest.wire import Answer, origin, send, sign, verify_answer
from tests.support import redis_up

BODY = b'{"id": 11, "name": "replayed doggie"}'
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest, make_rest_gateway: RestGatewayFactory
) -> tuple[RestDeployment, RestDeployment]:
    """Two gateways with the same registry; over Redis they share one replay cache."""
    if request.param == "redis" and not redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    shared = {"backend": request.param, "key_prefix": f"obmin-test-{uuid.uuid4()}:"}
    first = await make_rest_gateway(shared_state=shared)
    second = await make_rest_gateway(shared_state=shared)
    return first, second


def _request(
    gw: RestDeployment,
    dialect: str,
    message_id: str | None,
    *,
    algorithm: str = "ed25519",
    nonce: str | None = None,
) -> tuple[str, dict[str, str]]:
    """A signed POST of BODY in ``dialect``: (target, headers)."""
    if dialect == "xroad":
        target = f"/r1/{SERVICE}/pets"
        headers = {"X-Road-Client": SIGNED, "Content-Type": "application/json"}
        components = ["@method", "@target-uri", "x-road-client"]
        id_header = "X-Road-Id"
    else:
        target = "/restapi/pets"
        headers = {"Uxp-Client": SIGNED, "Uxp-Service": SERVICE, "Content-Type": "application/json"}
        components = ["@method", "@target-uri", "uxp-client", "uxp-service"]
        id_header = "Uxp-Queryid"
    if message_id is not None:
        headers[id_header] = message_id
        components.append(id_header.lower())
    signer = gw.signers[{"ed25519": "ed25519", "ecdsa-p256-sha256": "ec"}[algorithm]]
    signed = sign(
        gw.client,
        "POST",
        target,
        headers,
        signer,
        algorithm=algorithm,
        components=tuple(components),
        body=BODY,
        nonce=nonce,
    )
    return target, signed


def _code(answer: Answer, dialect: str) -> str | None:
    return answer.get("X-Road-Error" if dialect == "xroad" else "Uxp-Error")


@pytest.mark.parametrize("dialect", ["xroad", "uxp"])
@pytest.mark.parametrize("with_id", [True, False], ids=["with-id", "without-id"])
async def test_replay_is_refused(
    pair: tuple[RestDeployment, RestDeployment], dialect: str, with_id: bool
) -> None:
    first, second = pair
    message_id = f"replay-{uuid.uuid4()}" if with_id else None
    target, headers = _request(first, dialect, message_id)
    accepted = await send(first.client, "POST", target, headers, BODY)
    assert accepted.status == 200, accepted.body
    verify_answer(accepted, first.pki, dialect=dialect)
    replay = await send(first.client, "POST", target, headers, BODY)
    assert (replay.status, _code(replay, dialect)) == (400, "Client.ReplayedMessage")
    verify_answer(replay, first.pki, dialect=dialect)  # the refusal is signed as well
    # An unsigned header added to the copy changes nothing: what was signed is the same.
    dressed = await send(first.client, "POST", target, {**headers, "X-Trace": "new"}, BODY)
    assert _code(dressed, dialect) == "Client.ReplayedMessage"
    assert len(first.provider.requests) == 1
    # The second gateway serves the same name (one load balancer in front of both).
    across = await send(second.client, "POST", target, headers, BODY, host=origin(first.client))
    if first.settings.shared_state.backend == "redis":  # one cache for both gateways
        assert _code(across, dialect) == "Client.ReplayedMessage"
        assert second.provider.requests == []
    else:  # each process remembers on its own: why several processes need Redis
        assert across.status == 200


async def test_same_signed_content_without_id_is_new_only_once(
    rest_gateway: RestDeployment,
) -> None:
    """Two requests signed separately (another ``created``) are two messages."""
    target, headers = _request(rest_gateway, "xroad", None)
    assert (await send(rest_gateway.client, "POST", target, headers, BODY)).status == 200
    _, again = _request(rest_gateway, "xroad", None, nonce="fresh")
    assert (await send(rest_gateway.client, "POST", target, again, BODY)).status == 200


@pytest.mark.parametrize("dialect", ["xroad", "uxp"])
async def test_nonce_is_accepted_once(
    pair: tuple[RestDeployment, RestDeployment], dialect: str
) -> None:
    first, _ = pair
    nonce = f"nonce-{uuid.uuid4()}"
    target, headers = _request(first, dialect, f"id-{uuid.uuid4()}", nonce=nonce)
    assert (await send(first.client, "POST", target, headers, BODY)).status == 200
    # A new message id does not make an old nonce new.
    target, reused = _request(first, dialect, f"id-{uuid.uuid4()}", nonce=nonce)
    answer = await send(first.client, "POST", target, reused, BODY)
    assert _code(answer, dialect) == "Client.ReplayedMessage"
    target, fresh = _request(first, dialect, f"id-{uuid.uuid4()}", nonce=f"nonce-{uuid.uuid4()}")
    assert (await send(first.client, "POST", target, fresh, BODY)).status == 200
    assert len(first.provider.requests) == 2


def _malleate(signature_header: str) -> str:
    """ECDSA's twin signature: (r, s) -> (r, n - s) verifies for the same message and key."""
    label, _, value = signature_header.partition("=")
    raw = base64.b64decode(value.strip(":"))
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    twin = r + (P256_ORDER - s).to_bytes(32, "big")
    assert twin != raw
    return f"{label}=:{base64.b64encode(twin).decode()}:"


async def test_malleated_ecdsa_signature_is_a_replay(
    pair: tuple[RestDeployment, RestDeployment],
) -> None:
    first, second = pair
    target, headers = _request(first, "xroad", None, algorithm="ecdsa-p256-sha256")
    assert (await send(first.client, "POST", target, headers, BODY)).status == 200
    twin = {**headers, "Signature": _malleate(headers["Signature"])}
    replay = await send(first.client, "POST", target, twin, BODY)
    assert _code(replay, "xroad") == "Client.ReplayedMessage"
    assert len(first.provider.requests) == 1
    if first.settings.shared_state.backend == "memory":
        # Proof that the twin is a valid signature: a gateway that never saw the original
        # accepts it. (Keyed on the signature bytes, the first gateway would have too.)
        fresh = await send(second.client, "POST", target, twin, BODY, host=origin(first.client))
        assert fresh.status == 200, fresh.body
