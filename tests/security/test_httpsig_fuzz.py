"""Hypothesis against the whole request verifier: whatever is done to the signature headers,
the covered headers or the request line, the only outcomes are a `VerifiedHttpRequest` for
the untouched request or one of our coded `SecurityError`s (never a leaked ValueError)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from http_message_signatures import algorithms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from security.errors import SecurityError
from security.httpsig import RequestSignaturePolicy, verify_request_signature
from tests.security.conftest import NOW, Pki
from tests.security.test_httpsig_interop import _request, registered, sign, view_of

_ALPHABET = st.sampled_from([*'abcsig1209*-_./:+=?@%";,()\\ \t!#&', "é", "\x00", "\r\n "])


@pytest.fixture(scope="module")
def signed(pki: Pki) -> tuple[dict[str, str], Any]:
    request = sign(_request(), pki.ec_member, algorithms.ECDSA_P256_SHA256, nonce="n")
    return dict(request.headers), registered(pki.ec_member, pki.member)


@st.composite
def _edited(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(("insert", "delete", "replace")))
        char = draw(_ALPHABET)
        if edit == "insert":
            text = text[:at] + char + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + char + text[at + 1 :]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verifier_raises_only_coded_errors(signed: tuple[dict[str, str], Any], data: Any) -> None:
    headers, lookup = signed
    request = _request()
    request.headers = dict(headers)
    target = data.draw(
        st.sampled_from(["Signature-Input", "Signature", "X-Road-Client", "Content-Digest"])
    )
    if data.draw(st.booleans()):
        request.headers[target] = data.draw(_edited(headers[target]))
    else:
        request.headers[target] = data.draw(st.lists(_ALPHABET, max_size=40).map("".join))
    request.method = data.draw(st.sampled_from(["POST", "POST", "post", "GET"]))
    with contextlib.suppress(SecurityError):
        verified = verify_request_signature(view_of(request), RequestSignaturePolicy(), lookup, NOW)
        # Whatever verified must be exactly what was signed.
        assert request.method == "POST"
        assert verified.signed_value("x-road-client") == headers["X-Road-Client"]
