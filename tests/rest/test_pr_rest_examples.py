"""The request/response examples of X-Road's REST protocol (PR-REST section 6), replayed
signed through obmin against a provider answering as the spec shows; the X-Road headers the
spec shows come back, each as obmin defines it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from http_message_signatures import HTTPMessageSigner, algorithms

from gateway.server import create_client_app
from gateway.settings import Settings
from registry.identifiers import MemberId
from security import issue_member_cert, load_certificate, load_private_key
from security.httpsig_algs import http_keyid
from tests.rest.test_rest_signed import _Keys, _Request

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
    headers = [tuple(h.split(": ", 1)) for h in lines[1:blank]]
    body = "\n".join(lines[blank + 1 :]).encode()
    return start, headers, body  # type: ignore[return-value]


@pytest.mark.parametrize(("request_file", "response_file"), CASES, ids=[c[0][8:12] for c in CASES])
async def test_pr_rest_example(
    request_file: str,
    response_file: str,
    dev_pki: Path,
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
) -> None:
    start, spec_headers, body = _parse((EXAMPLES / request_file).read_text())
    method, target, _ = start.split(" ")
    status_line, answer_headers, answer_body = _parse((EXAMPLES / response_file).read_text())
    status = int(status_line.split(" ")[1])
    answer_type = dict((k.lower(), v) for k, v in answer_headers).get("content-type")
    if body.startswith(b"(multipart"):  # the spec elides the uploaded file
        body = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\ncat\r\n--b--\r\n'
        spec_headers = [
            (k, "multipart/form-data; boundary=b" if k == "Content-Type" else v)
            for k, v in spec_headers
        ]
    seen: list[tuple[str, str, bytes]] = []

    async def provider(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, await request.read()))
        # A provider answering as the spec shows, its own X-Road-* headers included.
        response = web.Response(status=status, body=answer_body if answer_type else b"")
        if answer_type:
            response.headers["Content-Type"] = answer_type
        response.headers["x-road-request-hash"] = "set-by-the-provider"
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", provider)
    server: TestServer = await aiohttp_server(app)
    signer = issue_member_cert(
        dev_pki,
        MemberId("DEV", "COM", "222"),
        name="TESTCLIENT",
        out_dir=tmp_path / "signer",
        key_type="ed25519",
    )
    registry = {
        "instance": "DEV",
        "trust_anchors": [{"name": "dev", "certificate": str(dev_pki / "ca" / "ca.crt")}],
        "members": [
            {
                "id": "DEV/COM/222",
                "name": "Test",
                "subsystems": [
                    {"code": "TESTCLIENT", "signing_certificates": [str(signer.cert_path)]},
                    {"code": "TESTSERVICE"},
                ],
            }
        ],
        "services": [
            {
                "provider": "DEV/COM/222/TESTSERVICE",
                "code": "petstore",
                "type": "rest",
                "url": str(server.make_url("/")),
            }
        ],
        "access": [
            {"provider": "DEV/COM/222/TESTSERVICE", "service": "petstore", "clients": [CLIENT]}
        ],
    }
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
    client = await aiohttp_client(create_client_app(settings))

    path = target.replace("{serviceId}", SERVICE)
    headers = {k: v.replace("{client}", CLIENT) for k, v in spec_headers if k.lower() != "host"}
    request = _Request(method, str(client.make_url(path)), headers)
    cert = load_certificate(signer.cert_path)
    client_header = next(k for k in headers if k.lower() == "x-road-client").lower()
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_Keys(load_private_key(signer.key_path), cert),
    ).sign(
        request,
        key_id=http_keyid(cert),
        created=datetime.now(UTC),
        covered_component_ids=("@method", "@target-uri", client_header),
        body=body or None,
    )
    response = await client.request(method, path, data=body or None, headers=request.headers)
    assert response.status == status, await response.text()
    assert seen == [(method, path.split(SERVICE, 1)[1], body)]
    shown = [k.lower() for k, _ in answer_headers if k.lower().startswith("x-road-")]
    assert set(shown) <= {k.lower() for k in response.headers}
    assert response.headers["x-road-client"] == CLIENT
    assert response.headers["x-road-service"] == SERVICE
    assert response.headers["x-road-id"].startswith("DEV-")  # generated: the request had none
    assert response.headers["x-road-request-hash"] != "set-by-the-provider"
    assert "Signature" in response.headers and "Content-Digest" in response.headers
    if answer_type:
        assert await response.read() == answer_body
