"""JSON request bodies are validated before forwarding (SPEC 11); valid ones pass byte for
byte, bodies of other types stay opaque. The hostile documents are the attack corpus's
(`tests/attacks/corpus/json-*.json`); these are the rules around them."""

from __future__ import annotations

import json

import pytest

from gateway.rest.json_body import JsonLimits, check_json, is_json_media_type
from gateway.rest.protocol import RestError
from tests.rest.conftest import CLIENT, SERVICE, RestDeployment, RestGatewayFactory
from tests.rest.wire import send

PETS = f"/r1/{SERVICE}/pets"


def _json(content_type: str = "application/json") -> list[tuple[str, str]]:
    return [("X-Road-Client", CLIENT), ("Content-Type", content_type)]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=UTF-8", "application/problem+json"],
)
async def test_valid_json_passes_byte_for_byte(
    rest_gateway: RestDeployment, content_type: str
) -> None:
    body = (
        b'  {"rnokpp":"1234567890", "name":"\\u0422\\u0430\\u0440\\u0430\\u0441 \xd0\xa8",\n'
        b'   "amount": -12.50e+2, "big": 123456789012345678901234567890, "tiny": 1e-300,\n'
        b'   "nested": [[[{"a": {"A": null}}]]], "empty": {}, "flags": [true, false]}  \n'
    )
    answer = await send(rest_gateway.client, "POST", PETS, _json(content_type), body)
    assert answer.status == 200, answer.body
    assert answer.body == body  # the petstore echoes what it received
    assert rest_gateway.provider.requests[-1][2]["Content-Type"] == content_type


async def test_other_content_types_stay_opaque(rest_gateway: RestDeployment) -> None:
    body = b'{"rnokpp": "1", "rnokpp": "2", "n": NaN}'
    for content_type in ("text/plain", "application/octet-stream", "application/jsonl"):
        answer = await send(rest_gateway.client, "POST", PETS, _json(content_type), body)
        assert answer.status == 200, (content_type, answer.body)
        assert answer.body == body


async def test_empty_json_body_is_not_a_document(rest_gateway: RestDeployment) -> None:
    answer = await send(rest_gateway.client, "DELETE", f"/r1/{SERVICE}/pet/1", _json())
    assert answer.status == 200, answer.body


async def test_limits_are_settings(make_rest_gateway: RestGatewayFactory) -> None:
    gateway = await make_rest_gateway(
        limits={"max_json_depth": 3, "max_json_number_digits": 5, "max_json_validation_bytes": 64}
    )
    deep = await send(gateway.client, "POST", PETS, _json(), b'{"a": [{"b": []}]}')
    assert deep["X-Road-Error"] == "Client.InvalidJson"
    assert "deeper than 3 levels" in json.loads(deep.body)["message"]
    long = await send(gateway.client, "POST", PETS, _json(), b"[123456]")
    assert "6 digits; at most 5" in json.loads(long.body)["message"]
    large = await send(gateway.client, "POST", PETS, _json(), b"[" + b"1," * 40 + b"1]")
    assert (large.status, large["X-Road-Error"]) == (400, "Client.MessageTooLarge")
    assert "limits.max_json_validation_bytes" in json.loads(large.body)["message"]
    fine = await send(gateway.client, "POST", PETS, _json(), b'{"a": [1, 12345]}')
    assert fine.status == 200
    assert len(gateway.provider.requests) == 1


async def test_spooled_json_is_validated_off_the_loop(rest_gateway: RestDeployment) -> None:
    """Bodies above the spool threshold (1 MiB) are read back from disk in a worker thread."""
    items = b",".join(b'{"id": %d, "name": "pet %d"}' % (i, i) for i in range(60_000))
    valid = b"[" + items + b"]"
    assert len(valid) > 1024 * 1024
    answer = await send(rest_gateway.client, "POST", PETS, _json(), valid)
    assert answer.status == 200, answer.body[:200]
    assert answer.body == valid
    duplicate = valid[:-1] + b', {"id": 1, "id": 2}]'
    refused = await send(rest_gateway.client, "POST", PETS, _json(), duplicate)
    assert refused["X-Road-Error"] == "Client.InvalidJson"
    assert "the key 'id' more than once" in json.loads(refused.body)["message"]
    assert len(rest_gateway.provider.requests) == 1


async def test_a_quoted_charset_is_read_as_the_charset(rest_gateway: RestDeployment) -> None:
    answer = await send(
        rest_gateway.client, "POST", PETS, _json('application/json; charset="utf-16"'), b"{}"
    )
    assert answer["X-Road-Error"] == "Client.InvalidJson"
    assert "charset=utf-16" in json.loads(answer.body)["message"]


async def test_json_must_be_utf8(rest_gateway: RestDeployment) -> None:
    answer = await send(
        rest_gateway.client, "POST", PETS, _json("application/json; charset=utf-16"), b"{}"
    )
    assert answer["X-Road-Error"] == "Client.InvalidJson"
    assert "charset=utf-16" in json.loads(answer.body)["message"]


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        ("application/json", True),
        ("application/json;charset=utf-8", True),
        (" APPLICATION/JSON ", True),
        ("application/ld+json", True),
        ("application/vnd.api+json; ext=x", True),
        ("text/json", False),
        ("application/jsonl", False),
        ("application/x-ndjson", False),
        ("application/json-patch", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(content_type: str | None, is_json: bool) -> None:
    assert is_json_media_type(content_type) is is_json


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"1e401", "exponent beyond"),
        (b"1e400", "overflows"),
        (b"-1.7976931348623159e308", "overflows"),
        (b"[1.0E-401]", "exponent beyond"),
        (b'{"a": {"a": 1}, "b": {"a": 2, "a": 3}}', "'a' more than once"),
        (b"[" * 65 + b"]" * 65, "deeper than 64"),
        (b'{"x": ' * 65 + b"1" + b"}" * 65, "deeper than 64"),
        (b'"unterminated', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_check_json_names_the_problem(document: bytes, problem: str) -> None:
    with pytest.raises(RestError) as caught:
        check_json(document, "application/json", JsonLimits())
    assert caught.value.code == "InvalidJson"
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "document",
    [
        b"0",
        b'"text"',
        b"null",
        b"[" * 64 + b"]" * 64,
        b"1.7976931348623157e308",
        b"1e-400",
        b'{"a": 1, "A": 2}',
        b'["\\ud800"]',
        b"-0",
    ],
)
def test_check_json_accepts_valid_documents(document: bytes) -> None:
    check_json(document, "application/json", JsonLimits())
