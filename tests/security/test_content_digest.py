"""Content-Digest (RFC 9530): parsing, the incremental checker, the header we produce, and
interoperability with the `http-message-signatures` package's digest code."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from http_message_signatures import ContentDigest as TheirContentDigest
from hypothesis import given
from hypothesis import strategies as st

from security.digest import (
    DigestChecker,
    check_content_digest,
    content_digest_from_headers,
    content_digest_header,
    parse_content_digest,
)
from security.errors import InvalidContentDigest, MissingContentDigest

HELLO = b'{"hello": "world"}'
# RFC 9530's examples (sections 2 and B) for the content {"hello": "world"}.
HELLO_SHA256 = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
HELLO_SHA512 = (
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+"
    "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
)


def test_rfc_9530_example_values() -> None:
    assert content_digest_header(HELLO, "sha-256") == HELLO_SHA256
    assert content_digest_header(HELLO, "sha-512") == HELLO_SHA512
    both = parse_content_digest(f"{HELLO_SHA512}, {HELLO_SHA256}")
    assert both.algorithms == ("sha-512", "sha-256")
    computed = check_content_digest(both, HELLO)
    assert computed["sha-256"] == hashlib.sha256(HELLO).digest()


def test_field_lines_are_combined() -> None:
    digest = parse_content_digest([HELLO_SHA256, HELLO_SHA512])
    assert digest.algorithms == ("sha-256", "sha-512")


def test_unknown_and_insecure_algorithms_are_ignored() -> None:
    digest = parse_content_digest(f"md5=:AAAA:, {HELLO_SHA256}, unixsum=:AAAA:;x")
    assert digest.algorithms == ("sha-256",)


@pytest.mark.parametrize(
    "value",
    [
        "md5=:AAAA:",
        "",
        "sha-256",
        'sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
        "sha-256=:AAAA:",
        "sha-512=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        f"{HELLO_SHA256}, {HELLO_SHA256}",
        "sha-256=(:AAAA:)",
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        "sha-256=:not base64!:",
    ],
)
def test_malformed_or_unusable(value: str) -> None:
    with pytest.raises(InvalidContentDigest) as info:
        parse_content_digest(value)
    assert info.value.code == "InvalidContentDigest"


def test_key_selects_one_member() -> None:
    wrong_512 = "sha-512=:" + "A" * 86 + "==:"
    digest = parse_content_digest(f"{HELLO_SHA256}, {wrong_512}", key="sha-256")
    assert digest.algorithms == ("sha-256",)
    check_content_digest(digest, HELLO)
    with pytest.raises(InvalidContentDigest, match="no 'sha-384'"):
        parse_content_digest(HELLO_SHA256, key="sha-384")


def test_checker_fed_in_chunks() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    expected = parse_content_digest(
        ", ".join(content_digest_header(body, alg) for alg in ("sha-256", "sha-512"))
    )
    checker = DigestChecker(expected)
    view = memoryview(body)
    for start in range(0, len(body), 65536):
        checker.update(view[start : start + 65536])
    assert checker.size == len(body)
    assert set(checker.finish()) == {"sha-256", "sha-512"}
    with pytest.raises(RuntimeError):
        checker.update(b"more")


def test_one_wrong_algorithm_of_two_fails() -> None:
    wrong = content_digest_header(b"other", "sha-512")
    checker = DigestChecker(parse_content_digest(f"{HELLO_SHA256}, {wrong}"))
    checker.update(HELLO)
    with pytest.raises(InvalidContentDigest, match="does not match"):
        checker.finish()


def test_empty_body_has_a_digest_too() -> None:
    check_content_digest(parse_content_digest(content_digest_header(b"")), b"")
    with pytest.raises(InvalidContentDigest):
        check_content_digest(parse_content_digest(content_digest_header(b"")), b"x")


def test_header_from_a_hash_state() -> None:
    state = hashlib.sha512()
    for chunk in (b'{"hello": ', b'"world"}'):
        state.update(chunk)
    assert content_digest_header(state, "sha-512") == HELLO_SHA512
    with pytest.raises(InvalidContentDigest, match="sha256 hash"):
        content_digest_header(hashlib.sha256(HELLO), "sha-512")


def test_missing_header() -> None:
    with pytest.raises(MissingContentDigest) as info:
        content_digest_from_headers({"content-type": ["application/json"]})
    assert info.value.code == "MissingContentDigest"
    assert content_digest_from_headers({"content-digest": [HELLO_SHA256]}).algorithms == (
        "sha-256",
    )


@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_interop_with_http_message_signatures(algorithm: str) -> None:
    ours = content_digest_header(HELLO, algorithm)  # type: ignore[arg-type]
    TheirContentDigest.verify(ours, HELLO)  # raises if they disagree

    class Theirs(TheirContentDigest):  # type: ignore[misc]
        pass

    Theirs.algorithm = algorithm
    check_content_digest(parse_content_digest(Theirs.create(HELLO)), HELLO)


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=120))
def test_parser_raises_only_coded_errors(value: str) -> None:
    with contextlib.suppress(InvalidContentDigest):
        parse_content_digest(value)


@given(st.binary(max_size=2048), st.sampled_from(["sha-256", "sha-512"]))
def test_round_trip_for_any_body(body: bytes, algorithm: str) -> None:
    header = content_digest_header(body, algorithm)  # type: ignore[arg-type]
    assert check_content_digest(parse_content_digest(header), body)
