"""The examples of X-Road's REST protocol (PR-REST 4.1, 4.3, 4.6 and 6), replayed signed
through obmin against a provider that answers as the spec shows. Each answer's signature is
verified, and its X-Road-Request-Hash recomputed from the bytes the client sent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

from gateway.audit import open_audit_store
from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import ClientId, MemberId
from security import IssuedCert, issue_member_cert
from tests.rest.wire import Answer, gateway_certificate, origin, send, sign, verify_answer

EXAMPLES = (
    Path(__file__).resolve().parents[3] / "shared" / "xroad-data" / "spec-examples" / "pr-rest"
)
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"PR-REST examples not at {EXAMPLES}")

SERVICE = "DEV/COM/222/TESTSERVICE/petstore"
CLIENT = "DEV/COM/222/TESTCLIENT"
CASES = [  # (request file, response file)
    ("pr-rest_6.2_GET_request.http", "pr-rest_6.2_GET_response.http"),
    ("pr-rest_6.3_PUT_request.http", "pr-rest_6.3_PUT_response.http"),
    ("pr-rest_6.4_POST_request.http", "pr-rest_6.4_POST_response.http"),
    ("pr-rest_6.5_DELETE_request.http", "pr-rest_6.5_DELETE_response.http"),
    ("pr-rest_6.6_POST_request.http", "pr-rest_6.6_POST_response.http"),
]


def _parse(text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    start = lines[0]
    blank = lines.index("") if "" in lines else len(lines)
    headers = [tuple(h.strip().split(": ", 1)) for h in lines[1:blank]]
    body = "\n".join(lines[blank + 1 :]).encode()
    return start, headers, body  # type: ignore[return-value]


def _headers_file(name: str) -> list[tuple[str, str]]:
    lines = (EXAMPLES / name).read_text().splitlines()
    return [tuple(line.strip().split(": ", 1)) for line in lines if line.strip()]  # type: ignore[misc]


@dataclass
class Provider:
    """A provider IS answering as told, recording what it received."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append((request.method, request.path_qs, dict(request.headers), body))
            response = web.Response(status=self.status, body=self.body)
            if self.content_type:
                response.headers["Content-Type"] = self.content_type
            # A provider setting the gateway's headers: obmin replaces them.
            response.headers["x-road-request-hash"] = "set-by-the-provider"
            response.headers["x-road-id"] = "set-by-the-provider"
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


@dataclass
class Deployment:
    client: TestClient[web.Request, web.Application]
    signer: IssuedCert
    pki: Path
    settings: Settings


def _registry(
    client: ClientId, service: str, url: str, signer: IssuedCert, ca: Path
) -> dict[str, Any]:
    provider_id, code = service.rsplit("/", 1)
    provider = ClientId.parse(provider_id)
    subsystems: dict[str, dict[str, dict[str, Any]]] = {}
    for party in (provider, client):  # the client last: its entry carries the certificate
        member = f"{party.instance}/{party.member_class}/{party.member_code}"
        subsystems.setdefault(member, {})[str(party.subsystem)] = {"code": party.subsystem}
    member = f"{client.instance}/{client.member_class}/{client.member_code}"
    subsystems[member][str(client.subsystem)]["signing_certificates"] = [str(signer.cert_path)]
    return {
        "instance": client.instance,
        "trust_anchors": [{"name": "dev", "certificate": str(ca)}],
        "members": [
            {"id": mid, "name": mid, "subsystems": list(subs.values())}
            for mid, subs in subsystems.items()
        ],
        "services": [
            {
                "provider": provider_id,
                "code": code,
                "type": "rest",
                "url": url,
                "timeout": {"connect": 1, "total": 5},
            }
        ],
        "access": [{"provider": provider_id, "service": code, "clients": [str(client)]}],
    }


@pytest.fixture
def deploy(
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> Callable[..., Any]:
    """A gateway for ``client`` calling ``service`` (identifiers of any instance); with no
    provider, the service's URL is a port where nothing listens."""

    async def factory(
        provider: Provider | None, client: str = CLIENT, service: str = SERVICE
    ) -> Deployment:
        client_id = ClientId.parse(client)
        url = "http://127.0.0.1:9/unreachable"
        if provider is not None:
            server: TestServer = await aiohttp_server(provider.app())
            url = str(server.make_url("/"))
        member = MemberId(client_id.instance, client_id.member_class, client_id.member_code)
        signer = issue_member_cert(
            dev_pki,
            member,
            name=client_id.subsystem or "client",
            out_dir=tmp_path / "signer",
            key_type="ed25519",
        )
        registry = _registry(client_id, service, url, signer, dev_pki / "ca" / "ca.crt")
        (tmp_path / "registry").mkdir()
        (tmp_path / "registry" / "r.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
        settings = Settings.model_validate(
            {
                "registry_dir": tmp_path / "registry",
                "keys": {
                    "signing_certificate": dev_pki / "gateway" / "sign.crt",
                    "signing_key": dev_pki / "gateway" / "sign.key",
                },
                "audit": {"path": tmp_path / "audit.db"},
            }
        )
        gateway = await aiohttp_client(create_client_app(settings))
        return Deployment(gateway, signer, dev_pki, settings)

    return factory


async def _call(
    gw: Deployment,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
) -> Answer:
    """Sign (method, target and every X-Road header present) and send on the wire."""
    plain = {k: v for k, v in headers if k.lower() != "host"}
    covered = (
        "@method",
        "@target-uri",
        *(k.lower() for k in plain if k.lower().startswith("x-road-")),
    )
    signed = sign(
        gw.client, method, target, plain, gw.signer, components=covered, body=body or None
    )
    return await send(gw.client, method, target, signed, body)


class _GatewayKey(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, pki: Path) -> None:
        self.cert = gateway_certificate(pki)

    def resolve_public_key(self, key_id: str) -> Any:
        return self.cert.public_key()


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]


@dataclass
class _Response:  # what http-message-signatures verifies: a response and its request
    status_code: int
    headers: dict[str, str]
    request: _Request


def _verify_with_the_package(answer: Answer, gw: Deployment, method: str, target: str) -> None:
    """The gateway's signature checked by an implementation nobody here wrote."""
    request = _Request(method, f"http://{origin(gw.client)}{target}", {})
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.RSA_PSS_SHA512, key_resolver=_GatewayKey(gw.pki)
    )
    results = verifier.verify(
        _Response(answer.status, dict(answer.headers), request),
        require_components=("@status", "content-digest", "x-road-request-hash"),
        body=answer.body,
    )
    assert results and results[0].body == answer.body


# --- 6: the GET, PUT, POST, DELETE and multipart examples -------------------------------------


@pytest.mark.parametrize(("request_file", "response_file"), CASES, ids=[c[0][8:12] for c in CASES])
async def test_pr_rest_example(
    request_file: str, response_file: str, deploy: Callable[..., Any]
) -> None:
    start, spec_headers, body = _parse((EXAMPLES / request_file).read_text())
    method, target, _ = start.split(" ")
    status_line, answer_headers, answer_body = _parse((EXAMPLES / response_file).read_text())
    answer_type = dict((k.lower(), v) for k, v in answer_headers).get("content-type")
    if body.startswith(b"(multipart"):  # the spec elides the uploaded file
        body = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\ncat\r\n--b--\r\n'
        spec_headers = [
            (k, "multipart/form-data; boundary=b" if k == "Content-Type" else v)
            for k, v in spec_headers
        ]
    status = int(status_line.split(" ")[1])
    provider = Provider(status, answer_body if answer_type else b"", answer_type)
    gw = await deploy(provider)
    path = target.replace("{serviceId}", SERVICE)
    headers = [(k, v.replace("{client}", CLIENT)) for k, v in spec_headers]
    answer = await _call(gw, method, path, headers, body)
    assert answer.status == status, answer.body
    assert [(m, p, b) for m, p, _, b in provider.seen] == [
        (method, path.split(SERVICE, 1)[1], body)
    ]
    shown = {k.lower() for k, _ in answer_headers if k.lower().startswith("x-road-")}
    assert shown <= {k.lower() for k, _ in answer.headers}
    assert answer["x-road-client"] == CLIENT
    assert answer["x-road-service"] == SERVICE
    assert answer["x-road-id"].startswith("DEV-")  # generated: the request had none
    assert answer.getall("x-road-request-hash") != ["set-by-the-provider"]
    verify_answer(answer, gw.pki)  # signature, request hash from the bytes sent, body
    if answer_type:
        assert answer.body == answer_body
    _verify_with_the_package(answer, gw, method, path)


# --- 4.1 and 4.3: the REST interface and the X-Road headers ----------------------------------


async def test_pr_rest_4_1_request(deploy: Callable[..., Any]) -> None:
    start, headers, _ = _parse((EXAMPLES / "pr-rest_4.1_request.http").read_text())
    method, target, _ = start.split(" ")
    client = dict(headers)["X-Road-Client"]
    provider = Provider(200, b'{"bar": "zyggy"}', "application/json")
    gw = await deploy(provider, client, "INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE")
    answer = await _call(gw, method, target, headers)
    assert answer.status == 200, answer.body
    # PR-REST 4.1: "the provider will see the request GET .../v1/bar/zyggy?quu=1".
    assert [(m, p) for m, p, _, _ in provider.seen] == [("GET", "/v1/bar/zyggy?quu=1")]
    assert answer["X-Road-Client"] == "INSTANCE/CLASS1/MEMBER1/SUBSYSTEM1"
    assert answer["X-Road-Service"] == "INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE"
    assert answer.body == b'{"bar": "zyggy"}'
    verify_answer(answer, gw.pki)


async def test_pr_rest_4_3_headers(deploy: Callable[..., Any]) -> None:
    request_headers = _headers_file("pr-rest_4.3_request-headers.http")
    response_shown = _headers_file("pr-rest_4.3_response-headers.http")
    sent = dict(request_headers)
    provider = Provider(200, b"[]", "application/json")
    gw = await deploy(provider, sent["X-Road-Client"], "INSTANCE/CLASS/MEMBER/SUBSYSTEM/PETSTORE")
    target = "/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/PETSTORE/v2/pets"
    answer = await _call(gw, "GET", target, request_headers)
    assert answer.status == 200, answer.body
    # The response carries the headers 4.3 shows, once each (the spec lists the hash twice).
    for name in {k for k, _ in response_shown}:
        assert len(answer.getall(name)) == 1, name
    assert answer["X-Road-Client"] == sent["X-Road-Client"]
    assert answer["X-Road-Service"] == "INSTANCE/CLASS/MEMBER/SUBSYSTEM/PETSTORE"
    assert answer["X-Road-Id"] == sent["X-Road-Id"]  # the client's own id is kept
    assert uuid.UUID(answer["X-Road-Request-Id"])
    verify_answer(answer, gw.pki)
    # The provider sees the client's X-Road headers (X-Road passes them) and its id.
    seen = {k.lower(): v for k, v in provider.seen[0][2].items()}
    for name in (
        "X-Road-Security-Server",
        "X-Road-Represented-Party",
        "X-Road-UserId",
        "X-Road-Issue",
        "X-Road-Id",
    ):
        assert seen[name.lower()] == sent[name]
    # The signed who-and-why are in the audit record.
    store = await open_audit_store(gw.settings.audit)
    try:
        request, response = list(await store.query(message_id=sent["X-Road-Id"]))
    finally:
        await store.close()
    assert request.user_id == sent["X-Road-UserId"]
    assert request.issue == sent["X-Road-Issue"]
    assert request.represented_party == sent["X-Road-Represented-Party"]
    assert response.http_status == 200


# --- 4.6: error handling -----------------------------------------------------------------------


def _example(number: int) -> tuple[int, list[tuple[str, str]], dict[str, Any]]:
    status_line, headers, _ = _parse(
        (EXAMPLES / f"pr-rest_4.6_example-{number}_response.http").read_text()
    )
    body = json.loads((EXAMPLES / f"pr-rest_4.6_example-{number}_body.json").read_text())
    return int(status_line.split(" ")[1]), headers, body


def _assert_error_shape(answer: Answer, example: dict[str, Any], status: int) -> None:
    """obmin's error looks like X-Road's: same status class, same body keys, X-Road-Error."""
    body = json.loads(answer.body)
    assert set(body) == set(example) == {"type", "message", "detail"}
    assert answer["X-Road-Error"] == body["type"]
    assert body["detail"] == answer["X-Road-Request-Id"]
    assert answer["Content-Type"].replace(" ", "") == "application/json;charset=utf-8"
    assert answer.status // 100 == status // 100


async def test_pr_rest_4_6_example_1_provider_error_passes_untouched(
    deploy: Callable[..., Any],
) -> None:
    status, headers, body = _example(1)
    raw = (EXAMPLES / "pr-rest_4.6_example-1_body.json").read_bytes()
    content_type = dict(headers)["Content-Type"]
    gw = await deploy(Provider(status, raw, content_type))
    target = f"/r1/{SERVICE}/v3/pet/findByStatus"
    answer = await _call(gw, "PUT", target, [("X-Road-Client", CLIENT)], b"{}")
    assert answer.status == status == 405
    assert answer.body == raw and json.loads(answer.body) == body
    assert answer["Content-Type"] == content_type
    assert answer.get("X-Road-Error") is None
    shown = {k.lower() for k, _ in headers if k.lower().startswith("x-road-")}
    assert shown <= {k.lower() for k, _ in answer.headers}
    verify_answer(answer, gw.pki)


async def test_pr_rest_4_6_example_2_provider_unreachable(deploy: Callable[..., Any]) -> None:
    status, _, example = _example(2)
    gw = await deploy(None)
    answer = await _call(gw, "GET", f"/r1/{SERVICE}/v2/pets/1124", [("X-Road-Client", CLIENT)])
    _assert_error_shape(answer, example, status)
    # X-Road: Server.ServerProxy.NetworkError with 500. obmin (SPEC 3.5, 3.2):
    # ServiceFailed.NetworkError with 502 Bad Gateway.
    assert answer["X-Road-Error"] == "Server.ServerProxy.ServiceFailed.NetworkError"
    assert answer.status == 502
    verify_answer(answer, gw.pki)


async def test_pr_rest_4_6_example_3_request_not_in_the_protocol(
    deploy: Callable[..., Any],
) -> None:
    status, _, example = _example(3)
    gw = await deploy(Provider())
    answer = await send(gw.client, "GET", "/r1/DEV/COM/222", [("X-Road-Client", CLIENT)])
    _assert_error_shape(answer, example, status)
    assert answer.status == status == 400
    assert answer["X-Road-Error"] == "Client.InvalidRequest"  # X-Road: Client.BadRequest
    verify_answer(answer, gw.pki)


async def test_pr_rest_4_6_example_4_gateway_database_error(deploy: Callable[..., Any]) -> None:
    status, _, example = _example(4)
    provider = Provider(200, b"[]", "application/json")
    gw = await deploy(provider)
    target, headers = f"/r1/{SERVICE}/v2/pets", [("X-Road-Client", CLIENT)]
    assert (await _call(gw, "GET", target, headers)).status == 200
    database = gw.settings.audit.path
    database.rename(database.with_suffix(".away"))  # the gateway's database is gone
    try:
        answer = await _call(gw, "GET", target, headers)
    finally:
        database.with_suffix(".away").rename(database)
    _assert_error_shape(answer, example, status)
    # X-Road: Server.ServerProxy.DatabaseError, 500. obmin: LoggingFailed, 503 (SPEC 3.5, 8).
    assert answer["X-Road-Error"] == "Server.ClientProxy.LoggingFailed"
    assert answer.status == 503
    assert len(provider.seen) == 1  # nothing forwarded without its audit record
    verify_answer(answer, gw.pki)
