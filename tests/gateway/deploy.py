"""A gateway on a real loopback socket (HTTP or HTTPS) with a SOAP and a REST service, and
clients that sign SOAP (obmin's signer) and REST (the `http-message-signatures` package).

Used by the trust tests: intermediates, OCSP through the gateway, mTLS and signature+mtls.
"""

from __future__ import annotations

import os
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
from lxml import etree

from adapters.client import build_soap_request
from adapters.demo import DEMO_NS
from adapters.example_provider import create_provider_app
from gateway.server import create_client_app
from gateway.settings import Settings
from gateway.tls import server_ssl_context
from registry import load_registry
from registry.identifiers import ClientId, ServiceId
from security import load_certificate, load_private_key, sign_soap
from security.httpsig_algs import http_keyid

PROVIDER = ClientId.parse("SEVDEIR-TEST/GOV/87654321/REGISTRY")
SOAP_SERVICE = ServiceId(PROVIDER, "getPerson", "v1")
REST_PATH = f"/r1/{PROVIDER}/persons/1"


def _person_body() -> etree._Element:
    body = etree.Element(f"{{{DEMO_NS}}}getPerson", nsmap={"p": DEMO_NS})
    etree.SubElement(body, f"{{{DEMO_NS}}}rnokpp").text = "1234567890"
    return body


def provider_app() -> web.Application:
    """The example SOAP provider plus a tiny REST endpoint."""
    app = create_provider_app()

    async def person(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "name": "Olena"})

    app.router.add_get("/rest/{id}", person)
    return app


def registry(
    anchors: list[dict[str, Any]], subsystems: list[dict[str, Any]], provider_url: str
) -> dict[str, Any]:
    """SEVDEIR-TEST: client member 12345678 with ``subsystems``, both services open to them."""
    clients = [f"SEVDEIR-TEST/GOV/12345678/{s['code']}" for s in subsystems]
    return {
        "instance": "SEVDEIR-TEST",
        "trust_anchors": anchors,
        "members": [
            {"id": "SEVDEIR-TEST/GOV/12345678", "name": "Ministry", "subsystems": subsystems},
            {
                "id": "SEVDEIR-TEST/GOV/87654321",
                "name": "State Registry Service",
                "subsystems": [{"code": "REGISTRY"}],
            },
        ],
        "services": [
            {
                "provider": str(PROVIDER),
                "code": "getPerson",
                "version": "v1",
                "type": "soap",
                "url": f"{provider_url}/soap",
                "timeout": {"connect": 2, "total": 5},
            },
            {
                "provider": str(PROVIDER),
                "code": "persons",
                "type": "rest",
                "url": f"{provider_url}/rest",
            },
        ],
        "access": [
            {"provider": str(PROVIDER), "service": "getPerson", "clients": clients},
            {"provider": str(PROVIDER), "service": "persons", "clients": list(clients)},
        ],
    }


@dataclass
class Gateway:
    """A started gateway: its base URL and the TLS context a client needs to trust it."""

    url: str
    server: TestServer
    server_ca: Path | None = None

    def client_ssl(
        self, cert: Path | None = None, key: Path | None = None
    ) -> ssl.SSLContext | None:
        """A client TLS context (trusting the gateway), with a client certificate if given."""
        if self.server_ca is None:
            return None
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if cert is not None:
            context.load_cert_chain(cert, key)
        return context


async def start_gateway(
    tmp_path: Path,
    registry_data: dict[str, Any],
    pki: Path,
    *,
    tls: tuple[Path, Path, Path] | None = None,
    settings_extra: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    name: str = "gw",
) -> Gateway:
    """Write the registry, start a gateway (HTTPS when ``tls`` = (cert, key, CA) is given)."""
    base = tmp_path / name
    (base / "registry").mkdir(parents=True)
    (base / "registry" / "r.yaml").write_text(yaml.safe_dump(registry_data), encoding="utf-8")
    data: dict[str, Any] = {
        "registry_dir": base / "registry",
        "keys": {
            "signing_certificate": pki / "gateway" / "sign.crt",
            "signing_key": pki / "gateway" / "sign.key",
            **(keys or {}),
        },
        "audit": {"path": base / "audit.db"},
        **(settings_extra or {}),
    }
    if tls is not None:
        data["client_tls"] = {"port": 0, "certificate": tls[0], "key": tls[1]}
    settings = Settings.model_validate(data)
    server = TestServer(create_client_app(settings))
    if tls is None:
        await server.start_server()
        return Gateway(str(server.make_url("")).rstrip("/"), server)
    assert settings.client_tls is not None
    context = server_ssl_context(
        settings.client_tls,
        load_registry(base / "registry"),
        settings.keys.passphrase(os.environ),
    )
    await server.start_server(ssl=context)
    return Gateway(str(server.make_url("")).rstrip("/"), server, server_ca=tls[2])


@dataclass(frozen=True)
class SoapResult:
    """A SOAP answer: its fault code and string (None for a served request)."""

    fault: str | None
    faultstring: str | None


async def soap_call(
    gateway: Gateway,
    client: ClientId,
    *,
    signer: tuple[Path, Path] | None,
    tls: tuple[Path, Path] | None = None,
    now: datetime | None = None,
) -> SoapResult:
    """Send getPerson as ``client``, signed by ``signer`` (cert, key) or unsigned."""
    envelope = build_soap_request(
        client, SOAP_SERVICE, _person_body(), message_id=str(uuid.uuid4())
    )
    if signer is not None:
        envelope = sign_soap(
            envelope,
            key=load_private_key(signer[1]),
            certificate=load_certificate(signer[0]),
            now=now or datetime.now(UTC),
        )
    context = gateway.client_ssl(*tls) if tls is not None else gateway.client_ssl()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "/",
            data=etree.tostring(envelope),
            headers={"Content-Type": "text/xml"},
            ssl=context if context is not None else True,
        ) as response,
    ):
        root = etree.fromstring(await response.read())
    return SoapResult(root.findtext(".//faultcode"), root.findtext(".//faultstring"))


class _Keys(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, key: Any, cert: Any) -> None:
        self.key, self.cert = key, cert

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.cert.public_key()


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]


def _algorithm(key: object) -> Any:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return algorithms.ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return algorithms.ECDSA_P256_SHA256
    assert isinstance(key, rsa.RSAPrivateKey)
    return algorithms.RSA_PSS_SHA512


@dataclass(frozen=True)
class RestResult:
    """A REST answer: status, X-Road-Error (None when served) and body."""

    status: int
    error: str | None
    body: bytes


async def rest_call(
    gateway: Gateway,
    client: ClientId,
    *,
    signer: tuple[Path, Path] | None,
    tls: tuple[Path, Path] | None = None,
) -> RestResult:
    """GET the persons service as ``client``, RFC 9421-signed by ``signer`` or unsigned."""
    url = gateway.url + REST_PATH
    headers = {"X-Road-Client": str(client), "X-Road-Id": str(uuid.uuid4())}
    if signer is not None:
        cert = load_certificate(signer[0])
        key = load_private_key(signer[1])
        request = _Request("GET", url, headers)
        HTTPMessageSigner(signature_algorithm=_algorithm(key), key_resolver=_Keys(key, cert)).sign(
            request,
            key_id=http_keyid(cert),
            created=datetime.now(UTC),
            covered_component_ids=("@method", "@target-uri", "x-road-client", "x-road-id"),
        )
        headers = request.headers
    context = gateway.client_ssl(*tls) if tls is not None else gateway.client_ssl()
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, ssl=context if context is not None else True) as response,
    ):
        return RestResult(
            response.status, response.headers.get("X-Road-Error"), await response.read()
        )
