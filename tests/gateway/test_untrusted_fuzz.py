"""Property tests on more parsers of untrusted input: the provider's SOAP answer, the admin
port's bearer tokens and OpenAPI documents. Only obmin's coded errors escape."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.admin_auth import authenticate_token
from gateway.errors import GatewayError, fault_for
from gateway.meta.common import MetaError
from gateway.meta.openapi import anonymise_openapi, load_openapi, openapi_endpoints
from gateway.settings import AdminToken, Settings
from gateway.soap.envelope import ID_NS, REPR_NS, SOAP_ENV_NS, XROAD_NS, parse_envelope
from gateway.soap.mime import ProtocolError
from gateway.state import STATE, GatewayState

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- the provider's SOAP answer (parse_envelope(response=True)) ---------------------------

_NAMES = [
    f"{{{SOAP_ENV_NS}}}Envelope",
    f"{{{SOAP_ENV_NS}}}Header",
    f"{{{SOAP_ENV_NS}}}Body",
    f"{{{SOAP_ENV_NS}}}Fault",
    f"{{{XROAD_NS}}}client",
    f"{{{XROAD_NS}}}service",
    f"{{{XROAD_NS}}}id",
    f"{{{XROAD_NS}}}protocolVersion",
    f"{{{XROAD_NS}}}userId",
    f"{{{XROAD_NS}}}requestHash",
    f"{{{ID_NS}}}xRoadInstance",
    f"{{{ID_NS}}}memberClass",
    f"{{{ID_NS}}}memberCode",
    f"{{{ID_NS}}}subsystemCode",
    f"{{{ID_NS}}}serviceCode",
    f"{{{ID_NS}}}serviceVersion",
    f"{{{REPR_NS}}}representedParty",
    f"{{{REPR_NS}}}partyClass",
    f"{{{REPR_NS}}}partyCode",
    "{urn:provider}getStateResponse",
    "plain",
]
_values = st.one_of(
    st.sampled_from(["EE", "BUSINESS", "producer", "getState", "4.0", "3.1", "", " x ", "a/b"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), max_size=12),
)
_object_types = st.sampled_from([None, "MEMBER", "SUBSYSTEM", "SERVICE", "OTHER"])


def _tree() -> st.SearchStrategy[Any]:
    leaf = st.tuples(st.sampled_from(_NAMES), _object_types, _values, st.just([]))
    return st.recursive(
        leaf,
        lambda children: st.tuples(
            st.sampled_from(_NAMES), _object_types, _values, st.lists(children, max_size=5)
        ),
        max_leaves=30,
    )


def _build(node: Any) -> etree._Element:
    tag, object_type, text, children = node
    element = etree.Element(tag)
    if object_type is not None:
        element.set(f"{{{ID_NS}}}objectType", object_type)
    element.text = text
    for child in children:
        element.append(_build(child))
    return element


@FUZZ
@given(st.lists(_tree(), max_size=4), st.booleans())
def test_provider_answer_parsing(children: list[Any], as_response: bool) -> None:
    root = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope")
    for child in children:
        root.append(_build(child))
    try:
        envelope = parse_envelope(root, response=as_response)
    except ProtocolError as exc:
        fault = fault_for(exc)
        assert fault.code == exc.code
        if as_response:  # a broken answer is the provider's fault, never the client's
            assert exc.code.startswith("ServiceFailed.")
            assert fault.side.value == "Server.ServerProxy"
    else:
        assert envelope.body_child is not None


# --- admin bearer tokens ---------------------------------------------------------------

TOKEN = "s3cret-admin-token"


def _state(tmp_path: Path) -> GatewayState:
    (tmp_path / "registry").mkdir(exist_ok=True)
    settings = Settings.model_validate(
        {
            "registry_dir": tmp_path / "registry",
            "keys": {"signing_certificate": "x.crt", "signing_key": "x.key"},
            "admin_tokens": [
                AdminToken(
                    name="ops", sha256=hashlib.sha256(TOKEN.encode()).hexdigest(), roles=("admin",)
                ).model_dump()
            ],
        }
    )
    return GatewayState(settings)


_header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
    max_size=80,
)


@FUZZ
@given(
    st.one_of(
        _header_text,
        st.builds(
            lambda s, t: f"{s} {t}",
            st.sampled_from(["Bearer", "bearer", "Basic", ""]),
            _header_text,
        ),
        st.just(f"Bearer {TOKEN}"),
        st.just(f"Bearer  {TOKEN} "),
    ),
    st.sampled_from(["admin", "auditor"]),
)
def test_admin_bearer_token_handling(tmp_path: Path, header: str, role: str) -> None:
    app = web.Application()
    app[STATE] = _state(tmp_path)
    request = make_mocked_request(
        "GET", "/admin/v1/registry", headers={"Authorization": header}, app=app
    )
    outcome = authenticate_token(request, role)
    if isinstance(outcome, AdminToken):
        assert outcome.name == "ops" and role in outcome.roles
        assert header.partition(" ")[2].strip() == TOKEN
    else:
        assert outcome.status in (401, 403)
        body = orjson.loads(outcome.body)  # type: ignore[arg-type]
        assert body["type"] in ("Unauthorized", "Forbidden")


# --- OpenAPI documents -----------------------------------------------------------------

_json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
_documents = st.fixed_dictionaries(
    {},
    optional={
        "openapi": st.one_of(st.sampled_from(["3.0.3", "3.1.0", "2.0", "x"]), _json_values),
        "swagger": st.one_of(st.just("2.0"), _json_values),
        "servers": st.one_of(
            st.lists(
                st.fixed_dictionaries({"url": st.one_of(st.text(max_size=30), _json_values)}),
                max_size=3,
            ),
            _json_values,
        ),
        "paths": st.one_of(
            st.dictionaries(
                st.text(max_size=15),
                st.one_of(
                    st.dictionaries(
                        st.sampled_from(["get", "post", "x", "servers"]), _json_values, max_size=3
                    ),
                    _json_values,
                ),
                max_size=4,
            ),
            _json_values,
        ),
        "basePath": _json_values,
    },
)


@FUZZ
@given(st.one_of(_documents, _json_values), st.booleans())
def test_openapi_document_loading(document: Any, as_json: bool) -> None:
    data = json.dumps(document).encode() if as_json else yaml.safe_dump(document).encode()
    try:
        loaded = load_openapi(data, is_json=as_json, max_bytes=1 << 20, what="the document")
        anonymise_openapi(loaded)
        openapi_endpoints(loaded)
    except GatewayError as exc:
        assert isinstance(exc, MetaError) and exc.code


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_openapi_loading_of_random_bytes(data: bytes, as_json: bool) -> None:
    try:
        load_openapi(data, is_json=as_json, max_bytes=200, what="the document")
    except MetaError as exc:
        assert exc.code


def test_an_invalid_identifier_in_the_answer_is_the_providers_fault() -> None:
    answer = (Path(__file__).parents[1] / "attacks" / "legitimate-answer.xml").read_bytes()
    for old, new, code in (
        (b">consumer<", b">consumer&#xA0;<", "ServiceFailed.InvalidClientIdentifier"),
        (b">getState<", b">getState&#xA0;<", "ServiceFailed.InvalidServiceIdentifier"),
    ):
        assert old in answer
        root = etree.fromstring(answer.replace(old, new, 1))
        try:
            parse_envelope(root, response=True)
        except ProtocolError as exc:
            assert exc.code == code
            assert fault_for(exc).full_code() == f"Server.ServerProxy.{code}"
        else:
            raise AssertionError("the answer was accepted")
        # The same identifier in a request is the client's fault.
        request = answer.replace(old, new, 1).replace(b"getStateResponse", b"getState")
        try:
            parse_envelope(etree.fromstring(request))
        except ProtocolError as exc:
            assert exc.code == code.removeprefix("ServiceFailed.")
