"""Signed REST exchanges: requests signed by `http-message-signatures`, signed answers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from security import load_certificate, load_private_key
from security.httpsig_algs import http_keyid
from security.httpsig_base import HttpResponseView
from security.httpsig_response import ResponseSignaturePolicy, verify_response_signature
from tests.rest import wire
from tests.rest.conftest import SERVICE, SIGNED, RestDeployment

PATH = f"/r1/{SERVICE}/pets"
BODY = b'{"id": 7, "name": "signed doggie"}'


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _Keys(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, key: Any, cert: Any) -> None:
        self.key, self.cert = key, cert

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.cert.public_key()


def _signed(
    gw: RestDeployment, message_id: str, *, body: bytes = BODY, created: datetime | None = None
) -> _Request:
    cert = load_certificate(gw.signer.cert_path)
    request = _Request(
        "POST",
        str(gw.client.make_url(PATH)),
        {"X-Road-Client": SIGNED, "X-Road-Id": message_id, "Content-Type": "application/json"},
    )
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_Keys(load_private_key(gw.signer.key_path), cert),
    ).sign(
        request,
        key_id=http_keyid(cert),
        created=created or datetime.now(UTC),
        covered_component_ids=("@method", "@target-uri", "x-road-client", "x-road-id"),
        body=body,
    )
    return request


async def test_signed_request_and_signed_answer(rest_gateway: RestDeployment) -> None:
    request = _signed(rest_gateway, "signed-1")
    response = await rest_gateway.client.post(PATH, data=BODY, headers=request.headers)
    assert response.status == 200, await response.text()
    assert await response.read() == BODY
    gateway_cert = load_certificate(rest_gateway.pki / "gateway" / "sign.crt")
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    verified = verify_response_signature(
        HttpResponseView(response.status, headers),
        ResponseSignaturePolicy(),
        {http_keyid(gateway_cert): gateway_cert}.get,
        datetime.now(UTC),
        expected_request_hash=response.headers["X-Road-Request-Hash"],
    )
    assert verified.certificate == gateway_cert


async def test_changed_body_is_refused_before_forwarding(rest_gateway: RestDeployment) -> None:
    request = _signed(rest_gateway, "signed-2")
    response = await rest_gateway.client.post(
        PATH, data=BODY.replace(b"7", b"8"), headers=request.headers
    )
    assert response.status == 400
    assert response.headers["X-Road-Error"] == "Client.InvalidContentDigest"
    assert rest_gateway.provider.requests == []


async def test_changed_header_stale_and_unsigned_are_refused(rest_gateway: RestDeployment) -> None:
    request = _signed(rest_gateway, "signed-3")
    tampered = {**request.headers, "X-Road-Id": "another-id"}
    response = await rest_gateway.client.post(PATH, data=BODY, headers=tampered)
    assert response.headers["X-Road-Error"] == "Client.InvalidSignatureValue"

    old = _signed(rest_gateway, "signed-4", created=datetime.now(UTC) - timedelta(hours=1))
    response = await rest_gateway.client.post(PATH, data=BODY, headers=old.headers)
    assert response.headers["X-Road-Error"] == "Client.StaleMessage"

    response = await rest_gateway.client.post(PATH, data=BODY, headers={"X-Road-Client": SIGNED})
    assert response.headers["X-Road-Error"] == "Client.MissingSignature"
    assert rest_gateway.provider.requests == []


# --- through the gateway, on the wire: each algorithm, each way of breaking a request -------

WIRE_COMPONENTS = ("@method", "@target-uri", "x-road-client", "x-road-id")


def _wire_signed(
    gw: RestDeployment,
    algorithm: str = "ed25519",
    *,
    signer: str | None = None,
    components: tuple[str, ...] = WIRE_COMPONENTS,
    **options: Any,
) -> dict[str, str]:
    headers = {
        "X-Road-Client": SIGNED,
        "X-Road-Id": f"wire-{uuid.uuid4()}",
        "Content-Type": "application/json",
    }
    key = gw.signers[signer or wire.ALGORITHMS[algorithm][0]]
    return wire.sign(
        gw.client,
        "POST",
        PATH,
        headers,
        key,
        algorithm=algorithm,
        components=components,
        body=BODY,
        **options,
    )


@pytest.mark.parametrize("algorithm", sorted(wire.ALGORITHMS))
async def test_each_algorithm_is_accepted_through_the_gateway(
    rest_gateway: RestDeployment, algorithm: str
) -> None:
    headers = _wire_signed(rest_gateway, algorithm)
    assert f'alg="{algorithm}"' in headers["Signature-Input"]
    answer = await wire.send(rest_gateway.client, "POST", PATH, headers, BODY)
    assert answer.status == 200, answer.body
    assert answer.body == BODY
    wire.verify_answer(answer, rest_gateway.pki)
    assert rest_gateway.provider.requests[-1][0] == "POST"


def _method(h: dict[str, str]) -> tuple[str, str, dict[str, str], bytes]:
    return "PUT", PATH, h, BODY  # the provider has PUT /pets too


def _path(h: dict[str, str]) -> tuple[str, str, dict[str, str], bytes]:
    return "POST", PATH + "?copy=1", h, BODY


def _header(h: dict[str, str]) -> tuple[str, str, dict[str, str], bytes]:
    return "POST", PATH, {**h, "X-Road-Id": "another-id"}, BODY


def _body(h: dict[str, str]) -> tuple[str, str, dict[str, str], bytes]:
    return "POST", PATH, h, BODY.replace(b"7", b"8")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_method, "Client.InvalidSignatureValue"),
        (_path, "Client.InvalidSignatureValue"),
        (_header, "Client.InvalidSignatureValue"),
        (_body, "Client.InvalidContentDigest"),
    ],
    ids=["method", "path", "header", "body"],
)
async def test_changed_request_is_refused_with_its_code(
    rest_gateway: RestDeployment, change: Any, code: str
) -> None:
    method, target, headers, body = change(_wire_signed(rest_gateway))
    answer = await wire.send(rest_gateway.client, method, target, headers, body)
    assert (answer.status, answer["X-Road-Error"]) == (400, code)
    wire.verify_answer(answer, rest_gateway.pki)
    assert rest_gateway.provider.requests == []


async def test_expired_replayed_uncovered_and_unregistered_are_refused(
    rest_gateway: RestDeployment,
) -> None:
    now = datetime.now(UTC)
    cases = {
        "Client.StaleMessage": _wire_signed(
            rest_gateway, created=now - timedelta(seconds=20), expires=now - timedelta(seconds=5)
        ),
        "Client.MissingCoveredComponent": _wire_signed(
            rest_gateway, components=("@method", "@target-uri", "x-road-id")
        ),
        "Client.UnknownKey": _wire_signed(rest_gateway, signer="unregistered"),
    }
    for code, headers in cases.items():
        answer = await wire.send(rest_gateway.client, "POST", PATH, headers, BODY)
        assert (answer.status, answer["X-Road-Error"]) == (400, code), answer.body
        wire.verify_answer(answer, rest_gateway.pki)
    once = _wire_signed(rest_gateway)
    assert (await wire.send(rest_gateway.client, "POST", PATH, once, BODY)).status == 200
    replay = await wire.send(rest_gateway.client, "POST", PATH, once, BODY)
    assert replay["X-Road-Error"] == "Client.ReplayedMessage"
    assert len(rest_gateway.provider.requests) == 1
