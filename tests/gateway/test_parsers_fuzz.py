"""Property tests: every parser of untrusted input lets only obmin's coded errors escape."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError, fault_for
from gateway.rest.protocol import RestError, parse_rest_head, render_error
from gateway.soap.mime import ProtocolError, split_soap_payload
from gateway.soap_exchange import _soap_action_operation
from registry.errors import InvalidIdentifier
from registry.identifiers import ClientId, MemberId, ServiceId

printable = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
segment = st.one_of(
    st.sampled_from(["EE", "GOV", "12345678", "SUB", "svc", "%2F", "%2e%2e", "..", "", "%", "%zz"]),
    printable.filter(lambda s: "/" not in s and "?" not in s),
)


@given(
    st.lists(segment, min_size=0, max_size=9),
    st.text(max_size=20),
    st.dictionaries(
        st.sampled_from(
            [
                "x-road-client",
                "x-road-id",
                "uxp-client",
                "uxp-service",
                "uxp-purpose-ids",
                "x-road-userid",
            ]
        ),
        st.lists(printable, min_size=1, max_size=2),
        max_size=4,
    ),
)
@settings(max_examples=300)
def test_rest_head_parser(parts: list[str], query: str, headers: dict[str, list[str]]) -> None:
    target = "/" + "/".join(["r1", *parts]) + (f"?{query}" if query else "")
    for candidate in (target, "/restapi/" + "/".join(parts)):
        with contextlib.suppress(RestError):
            head = parse_rest_head("GET", candidate, headers)
            assert str(head.client).count("/") in (2, 3)


@given(
    st.binary(max_size=600),
    st.sampled_from(
        [
            "multipart/related; boundary=B",
            'multipart/related; boundary="a b"',
            "text/xml",
            "multipart/related",
            "multipart/related; boundary=",
            "application/xop+xml",
        ]
    ),
)
@settings(max_examples=300)
def test_multipart_splitter(body: bytes, content_type: str) -> None:
    with contextlib.suppress(ProtocolError):
        split_soap_payload(content_type, b"--B\r\nContent-Type: text/xml\r\n\r\n" + body)
    with contextlib.suppress(ProtocolError):
        split_soap_payload(content_type, body)


@given(printable)
def test_identifier_parsers(text: str) -> None:
    for parse in (MemberId.parse, ClientId.parse, ServiceId.parse):
        with contextlib.suppress(InvalidIdentifier):
            value = parse(text)
            assert parse(str(value)) == value  # what parses, round-trips


@given(st.one_of(st.none(), printable))
def test_soap_action(value: str | None) -> None:
    with contextlib.suppress(ProtocolError):
        _soap_action_operation(value)


@given(st.one_of(st.none(), printable))
def test_accept_header_in_error_rendering(accept: str | None) -> None:
    body, content_type = render_error(
        fault_for(GatewayError("x", code="InvalidRequest")), "id", accept
    )
    assert body and content_type.startswith(("application/json", "application/xml"))
