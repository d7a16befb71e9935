"""Signed REST exchanges: requests signed by `http-message-signatures`, signed answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from security import load_certificate, load_private_key
from security.httpsig_algs import http_keyid
from security.httpsig_base import HttpResponseView
from security.httpsig_response import ResponseSignaturePolicy, verify_response_signature
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
