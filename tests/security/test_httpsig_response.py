"""Signed REST responses (SPEC 5.3): obmin's signer, our verifier and, for interoperability,
the verifier of the `http-message-signatures` package."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

from security import load_certificate, load_private_key
from security.digest import DigestChecker, content_digest_header
from security.errors import (
    InvalidContentDigest,
    InvalidSignatureValue,
    MissingCoveredComponent,
    SigningError,
    StaleMessage,
    UnknownKey,
)
from security.httpsig_algs import http_keyid
from security.httpsig_base import HttpResponseView
from security.httpsig_response import (
    ResponseSignaturePolicy,
    sign_response,
    verify_response_signature,
)
from tests.security.conftest import NOW, Pki, Signer

BODY = b'{"person": {"rnokpp": "1234567890"}}'
REQUEST_HASH = base64.b64encode(hashlib.sha512(b"the request").digest()).decode()


def _headers(body: bytes = BODY, request_hash: str = REQUEST_HASH) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Content-Digest": content_digest_header(body, "sha-512"),
        "X-Road-Request-Hash": request_hash,
    }


def _view(status: int, headers: dict[str, str], extra: dict[str, str]) -> HttpResponseView:
    lowered: dict[str, list[str]] = {}
    for name, value in (headers | extra).items():
        lowered.setdefault(name.lower(), []).append(value)
    return HttpResponseView(status, lowered)


def _gateway(pki: Pki) -> Signer:
    return Signer(
        issued=pki.member.issued,
        key=load_private_key(pki.layout.gateway_key),
        cert=load_certificate(pki.layout.gateway_cert),
    )


@pytest.mark.parametrize("which", ["gateway", "ec_member", "ed_member"])
def test_signed_response_verifies(pki: Pki, which: str) -> None:
    signer = _gateway(pki) if which == "gateway" else getattr(pki, which)
    headers = _headers()
    added = sign_response(200, headers, signer.key, signer.cert, NOW)
    assert set(added) == {"Signature-Input", "Signature"}
    assert added["Signature-Input"].startswith(
        'obmin=("@status" "content-digest" "x-road-request-hash");created='
    )
    lookup = {http_keyid(signer.cert): signer.cert}.get
    verified = verify_response_signature(
        _view(200, headers, added),
        ResponseSignaturePolicy(),
        lookup,
        NOW + timedelta(seconds=1),
        expected_request_hash=REQUEST_HASH,
    )
    assert verified.request_hash == REQUEST_HASH
    assert verified.status == 200
    assert verified.certificate == signer.cert
    assert verified.label == "obmin"
    checker = DigestChecker(verified.content_digest)
    checker.update(BODY)
    assert checker.finish()["sha-512"] == hashlib.sha512(BODY).digest()


def test_gateway_rsa_key_signs_with_pss(pki: Pki) -> None:
    gateway = _gateway(pki)
    added = sign_response(200, _headers(), gateway.key, gateway.cert, NOW)
    assert 'alg="rsa-pss-sha512"' in added["Signature-Input"]
    assert f'keyid="{http_keyid(gateway.cert)}"' in added["Signature-Input"]


def test_uxp_request_hash_header(pki: Pki) -> None:
    signer = pki.ed_member
    headers = {"Content-Digest": content_digest_header(b""), "UXP-Request-Hash": REQUEST_HASH}
    added = sign_response(
        204, headers, signer.key, signer.cert, NOW, request_hash_header="uxp-request-hash"
    )
    policy = ResponseSignaturePolicy(request_hash_header="uxp-request-hash")
    lookup = {http_keyid(signer.cert): signer.cert}.get
    verified = verify_response_signature(_view(204, headers, added), policy, lookup, NOW)
    assert verified.request_hash == REQUEST_HASH
    with pytest.raises(MissingCoveredComponent):
        verify_response_signature(
            _view(204, headers, added), ResponseSignaturePolicy(), lookup, NOW
        )


@dataclass
class _Response:
    """The message interface http-message-signatures verifies: status_code, headers."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


class _PublicKeys(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def resolve_public_key(self, key_id: str) -> Any:
        return self.signer.cert.public_key() if key_id == http_keyid(self.signer.cert) else None

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError(key_id)


@pytest.mark.parametrize(
    ("which", "algorithm"),
    [
        ("gateway", algorithms.RSA_PSS_SHA512),
        ("ec_member", algorithms.ECDSA_P256_SHA256),
        ("ed_member", algorithms.ED25519),
    ],
)
def test_http_message_signatures_verifies_our_responses(
    pki: Pki, which: str, algorithm: Any
) -> None:
    signer = _gateway(pki) if which == "gateway" else getattr(pki, which)
    headers = _headers()
    # That library checks freshness against the real clock.
    added = sign_response(200, headers, signer.key, signer.cert, datetime.now(UTC))
    response = _Response(200, headers | added)
    verifier = HTTPMessageVerifier(signature_algorithm=algorithm, key_resolver=_PublicKeys(signer))
    (result,) = verifier.verify(
        response,
        require_components=("@status", "content-digest", "x-road-request-hash"),
        body=BODY,
    )
    assert result.covered_components['"x-road-request-hash"'] == REQUEST_HASH


def test_rsa_v1_5_on_request(pki: Pki) -> None:
    gateway = _gateway(pki)
    added = sign_response(
        200, _headers(), gateway.key, gateway.cert, NOW, algorithm="rsa-v1_5-sha256"
    )
    lookup = {http_keyid(gateway.cert): gateway.cert}.get
    verified = verify_response_signature(
        _view(200, _headers(), added), ResponseSignaturePolicy(), lookup, NOW
    )
    assert verified.algorithm == "rsa-v1_5-sha256"


# --- refusals -------------------------------------------------------------------------------


def _signed(pki: Pki) -> tuple[dict[str, str], dict[str, str], Any]:
    signer = pki.ec_member
    headers = _headers()
    added = sign_response(200, headers, signer.key, signer.cert, NOW)
    return headers, added, {http_keyid(signer.cert): signer.cert}.get


def test_changed_status_is_refused(pki: Pki) -> None:
    headers, added, lookup = _signed(pki)
    with pytest.raises(InvalidSignatureValue):
        verify_response_signature(
            _view(500, headers, added), ResponseSignaturePolicy(), lookup, NOW
        )


def test_changed_request_hash_is_refused(pki: Pki) -> None:
    headers, added, lookup = _signed(pki)
    headers["X-Road-Request-Hash"] = REQUEST_HASH.replace("A", "B", 1).replace("a", "b", 1)
    with pytest.raises(InvalidSignatureValue):
        verify_response_signature(
            _view(200, headers, added), ResponseSignaturePolicy(), lookup, NOW
        )


def test_answer_to_another_request_is_refused(pki: Pki) -> None:
    headers, added, lookup = _signed(pki)
    with pytest.raises(InvalidSignatureValue, match="another request"):
        verify_response_signature(
            _view(200, headers, added),
            ResponseSignaturePolicy(),
            lookup,
            NOW,
            expected_request_hash="not-the-hash",
        )


def test_changed_body_is_refused_by_the_digest(pki: Pki) -> None:
    headers, added, lookup = _signed(pki)
    verified = verify_response_signature(
        _view(200, headers, added), ResponseSignaturePolicy(), lookup, NOW
    )
    checker = DigestChecker(verified.content_digest)
    checker.update(BODY + b" ")
    with pytest.raises(InvalidContentDigest):
        checker.finish()


def test_stale_and_unknown_key(pki: Pki) -> None:
    headers, added, lookup = _signed(pki)
    view = _view(200, headers, added)
    with pytest.raises(StaleMessage):
        verify_response_signature(view, ResponseSignaturePolicy(), lookup, NOW + timedelta(hours=1))
    with pytest.raises(UnknownKey):
        verify_response_signature(view, ResponseSignaturePolicy(), {}.get, NOW)
    short = replace(ResponseSignaturePolicy(), max_clock_skew=timedelta(seconds=1))
    with pytest.raises(StaleMessage):
        verify_response_signature(view, short, lookup, NOW + timedelta(seconds=2))


def test_signing_needs_digest_and_request_hash(pki: Pki) -> None:
    signer = pki.ed_member
    for missing in ("Content-Digest", "X-Road-Request-Hash"):
        headers = _headers()
        del headers[missing]
        with pytest.raises(SigningError, match=missing.lower()):
            sign_response(200, headers, signer.key, signer.cert, NOW)


def test_signing_refuses_a_key_of_another_certificate(pki: Pki) -> None:
    with pytest.raises(SigningError, match="does not belong"):
        sign_response(200, _headers(), pki.ed_member.key, pki.ec_member.cert, NOW)


def test_signing_refuses_an_algorithm_the_key_cannot_use(pki: Pki) -> None:
    with pytest.raises(SigningError):
        sign_response(
            200, _headers(), pki.ed_member.key, pki.ed_member.cert, NOW, algorithm="rsa-pss-sha512"
        )


def test_signing_refuses_naive_time(pki: Pki) -> None:
    with pytest.raises(SigningError, match="timezone"):
        sign_response(
            200, _headers(), pki.ed_member.key, pki.ed_member.cert, NOW.replace(tzinfo=None)
        )
