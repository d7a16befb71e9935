"""RFC 9421 test vectors (tests/vectors/httpsig): our signature base and algorithms against the
RFC's own examples, so that interoperability does not rest on one library's reading."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from security.digest import check_content_digest, parse_content_digest
from security.errors import InvalidSignatureInput
from security.httpsig_algs import HttpSigAlgorithm, HttpSigPublicKey, sign_base, verify_base
from security.httpsig_base import (
    HttpMessageView,
    HttpRequestView,
    HttpResponseView,
    build_signature_base,
    component_value,
    parse_signatures,
)
from security.httpsig_sfv import parse_item

VECTORS = Path(__file__).parents[1] / "vectors" / "httpsig"
SIGNATURE_FILES = sorted(p.name for p in VECTORS.glob("*.json") if p.name != "components.json")


def _headers(pairs: list[list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value)
    return out


def _view(message: dict[str, Any]) -> HttpMessageView:
    headers = _headers(message["headers"])
    if message["kind"] == "response":
        return HttpResponseView(message["status"], headers)
    return HttpRequestView(
        message["method"],
        message["target_uri"],
        message["authority"],
        message["path"],
        message["query"],
        headers,
    )


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def _public_key(name: str) -> HttpSigPublicKey:
    key = load_pem_public_key((VECTORS / "keys" / name).read_bytes())
    assert not isinstance(key, bytes)
    return key  # type: ignore[return-value]


def test_all_vector_files_are_found() -> None:
    assert len(SIGNATURE_FILES) == 6


@pytest.mark.parametrize("name", SIGNATURE_FILES)
def test_signature_base_is_the_rfcs(name: str) -> None:
    vector = _load(name)
    view = _view(vector["message"])
    entry = parse_signatures(view.headers)[vector["label"]]
    base, covered = build_signature_base(entry.signature_input, view)
    assert base.decode("ascii") == "\n".join(vector["signature_base"])
    assert len(covered) == len(vector["signature_base"]) - 1


@pytest.mark.parametrize("name", SIGNATURE_FILES)
def test_rfc_signature_verifies(name: str) -> None:
    vector = _load(name)
    view = _view(vector["message"])
    entry = parse_signatures(view.headers)[vector["label"]]
    base, _ = build_signature_base(entry.signature_input, view)
    key = _public_key(vector["key"])
    algorithm: HttpSigAlgorithm = vector["algorithm"]
    assert verify_base(algorithm, key, entry.value, base)
    # One flipped bit anywhere in the base, or in the value, and it no longer verifies.
    assert not verify_base(algorithm, key, entry.value, base.replace(b"created=16", b"created=17"))
    assert not verify_base(algorithm, key, entry.value, base + b" ")
    tampered = bytes([entry.value[0] ^ 1]) + entry.value[1:]
    assert not verify_base(algorithm, key, tampered, base)


@pytest.mark.parametrize("name", SIGNATURE_FILES)
def test_rfc_content_digest_matches_the_body(name: str) -> None:
    message = _load(name)["message"]
    digest = parse_content_digest(_headers(message["headers"])["content-digest"])
    computed = check_content_digest(digest, message["body"].encode())
    assert computed["sha-512"] == hashlib.sha512(message["body"].encode()).digest()


def test_ed25519_signature_is_reproduced_byte_for_byte() -> None:
    vector = _load("b26_ed25519.json")
    private = load_pem_private_key((VECTORS / "keys" / vector["private_key"]).read_bytes(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    base = "\n".join(vector["signature_base"]).encode("ascii")
    expected = vector["message"]["headers"][-1][1].removeprefix("sig-b26=:").rstrip(":")
    assert base64.b64encode(sign_base("ed25519", private, base)).decode() == expected


def test_rsa_v1_5_signature_is_deterministic_in_the_vector() -> None:
    # PKCS#1 v1.5 is deterministic, but we only hold the public key: the value is unique.
    vector = _load("s43_proxy_rsa_v1_5.json")
    view = _view(vector["message"])
    entries = parse_signatures(view.headers)
    assert list(entries) == ["sig1", "proxy_sig"]
    assert entries["proxy_sig"].int_param("expires") == 1618884540
    assert entries["proxy_sig"].str_param("alg") == "rsa-v1_5-sha256"


def test_client_signature_does_not_verify_at_the_origin() -> None:
    # RFC 9421 4.3: sig1 covered @authority example.com; behind the proxy it cannot verify.
    proxied = _load("s43_proxy_rsa_v1_5.json")
    view = _view(proxied["message"])
    entry = parse_signatures(view.headers)["sig1"]
    base, _ = build_signature_base(entry.signature_input, view)
    assert not verify_base(
        "ecdsa-p256-sha256", _public_key("test-key-ecc-p256.pem"), entry.value, base
    )


def _components() -> dict[str, Any]:
    return _load("components.json")


@pytest.mark.parametrize(
    ("identifier", "expected"), [tuple(pair) for pair in _components()["expected"]]
)
def test_component_values_of_section_2(identifier: str, expected: str) -> None:
    request = _components()["request"]
    view = HttpRequestView(
        request["method"],
        request["target_uri"],
        request["authority"],
        request["path"],
        request["query"],
        _headers(request["headers"]),
    )
    assert component_value(parse_item(identifier), view) == expected


@pytest.mark.parametrize("example", _components()["query_examples"])
def test_query_component_examples(example: dict[str, Any]) -> None:
    view = HttpRequestView(
        "GET", "https://example.com/p", "example.com", "/p", example["query"], {}
    )
    assert component_value(parse_item('"@query"'), view) == example["@query"]


def test_query_param_of_b22_is_refused_cleanly() -> None:
    # B.2.2 covers "@query-param";name="Pet": obmin refuses it rather than risk a mismatch.
    view = HttpRequestView(
        "POST", "https://example.com/foo?Pet=dog", "example.com", "/foo", "Pet=dog", {}
    )
    with pytest.raises(InvalidSignatureInput, match="query-param"):
        component_value(parse_item('"@query-param";name="Pet"'), view)
