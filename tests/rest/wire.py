"""A REST client as an information system would write one, independent of the gateway's code.

- `send` writes a request as raw bytes on a socket and parses the answer, so a test knows
  exactly which bytes the gateway received;
- `sign` signs with the `http-message-signatures` package (nobody here wrote it);
- `request_hash` recomputes ``X-Road-Request-Hash`` from the bytes sent, as X-Road PR-REST 4.3
  defines it (the serialisation of X-Road's ``RestRequest``), written afresh from the spec;
- `verify_answer` checks the gateway's response signature, the request hash and the body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from security import IssuedCert, load_certificate, load_private_key
from security.digest import DigestChecker
from security.httpsig_algs import http_keyid
from security.httpsig_base import HttpResponseView
from security.httpsig_response import (
    ResponseSignaturePolicy,
    VerifiedHttpResponse,
    verify_response_signature,
)

ALGORITHMS = {
    "rsa-pss-sha512": ("rsa", algorithms.RSA_PSS_SHA512),
    "rsa-v1_5-sha256": ("rsa", algorithms.RSA_V1_5_SHA256),
    "ecdsa-p256-sha256": ("ec", algorithms.ECDSA_P256_SHA256),
    "ed25519": ("ed25519", algorithms.ED25519),
}

# X-Road PR-REST 4.3 "Filtered headers", "Specially handled headers" (and SPEC 3.2).
_NOT_HASHED = {
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "user-agent",
    "server",
}


@dataclass
class Request:
    """What `http-message-signatures` signs: method, absolute URL, headers (in order)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    """A parsed HTTP answer: status, header lines in order, body; ``sent`` is the request."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    sent: bytes

    def get(self, name: str) -> str | None:
        values = self.getall(name)
        return values[0] if values else None

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value


class _Keys(HTTPSignatureKeyResolver):  # type: ignore[misc]
    def __init__(self, key: Any, cert: x509.Certificate) -> None:
        self.key, self.cert = key, cert

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.cert.public_key()


def origin(client: TestClient[web.Request, web.Application]) -> str:
    """``host:port`` of the gateway under test (the Host header `send` writes)."""
    return f"{client.server.host}:{client.server.port}"


def sign(
    client: TestClient[web.Request, web.Application],
    method: str,
    target: str,
    headers: dict[str, str],
    signer: IssuedCert,
    *,
    algorithm: str = "ed25519",
    components: tuple[str, ...] = ("@method", "@target-uri"),
    body: bytes | None = None,
    created: datetime | None = None,
    **options: Any,
) -> dict[str, str]:
    """``headers`` plus Signature-Input, Signature (and Content-Digest for a body)."""
    cert = load_certificate(signer.cert_path)
    request = Request(method, f"http://{origin(client)}{target}", dict(headers))
    HTTPMessageSigner(
        signature_algorithm=ALGORITHMS[algorithm][1],
        key_resolver=_Keys(load_private_key(signer.key_path), cert),
    ).sign(
        request,
        key_id=http_keyid(cert),
        created=created or datetime.now(UTC),
        covered_component_ids=components,
        body=body,
        **options,
    )
    return request.headers


async def send(
    client: TestClient[web.Request, web.Application],
    method: str,
    target: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    *,
    host: str | None = None,
) -> Answer:
    """Write the request byte for byte on a new connection; read the whole answer.

    ``host`` overrides the Host header (two gateways behind one name, as behind a load
    balancer, see the same ``@authority``)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host or origin(client)}"]
    items = headers.items() if isinstance(headers, dict) else headers
    lines += [f"{name}: {value}" for name, value in items]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    while data.startswith(b"HTTP/1.1 1"):  # interim answers (100 Continue)
        data = data.partition(b"\r\n\r\n")[2]
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = [(n, v.strip()) for n, _, v in (line.partition(":") for line in header_lines)]
    length = next((int(v) for n, v in parsed if n.lower() == "content-length"), len(rest))
    answer_body = b"" if method == "HEAD" else rest[:length]
    return Answer(int(status_line.split(" ")[1]), parsed, answer_body, raw)


def request_hash(answer: Answer, *, dialect: str = "xroad") -> str:
    """X-Road-Request-Hash of the request `send` wrote, recomputed from its bytes.

    PR-REST 4.3: base64 SHA512(SHA512(head) + SHA512(body)), SHA512(head) without a body;
    head as X-Road's RestRequest serialises it: method CRLF, target CRLF, ``Name:Value`` CRLF
    per header line kept, then the headers the gateway adds (request id; message id when it
    generated one, which the answer echoes).
    """
    request_id_name, id_name = (
        ("X-Road-Request-Id", "X-Road-Id")
        if dialect == "xroad"
        else ("Uxp-Transaction-Id", "Uxp-Queryid")
    )
    gateway_owned = {  # set by gateways only, in either dialect
        "x-road-request-id",
        "x-road-request-hash",
        "x-road-error",
        "uxp-transaction-id",
        "uxp-request-hash",
        "uxp-error",
    }
    head, _, body = answer.sent.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("utf-8").split("\r\n")
    method, target, _ = request_line.split(" ")
    fields = [(n, v.strip(" \t")) for n, _, v in (line.partition(":") for line in header_lines)]
    named = {
        t.strip().lower() for n, v in fields if n.lower() == "connection" for t in v.split(",")
    }
    kept = [
        (n, v)
        for n, v in fields
        if n.lower() not in _NOT_HASHED | named | gateway_owned
        and not n.lower().startswith("proxy-")
    ]
    kept.append((request_id_name, answer[request_id_name]))
    id_names = {"x-road-id"} if dialect == "xroad" else {"uxp-queryid", "uxp-id"}
    sent_id = any(n.lower() in id_names for n, _ in fields)
    if not sent_id and answer.get(id_name) is not None:  # generated by the gateway
        kept.append((id_name, answer[id_name]))
    text = f"{method}\r\n{target}\r\n" + "".join(f"{n}:{v}\r\n" for n, v in kept)
    digest = hashlib.sha512(text.encode()).digest()
    if body:
        digest = hashlib.sha512(digest + hashlib.sha512(body).digest()).digest()
    return base64.b64encode(digest).decode()


def gateway_certificate(pki: Path) -> x509.Certificate:
    """The gateway's signing certificate (published on the admin port)."""
    return load_certificate(pki / "gateway" / "sign.crt")


def verify_answer(
    answer: Answer, pki: Path, *, dialect: str = "xroad", hashed: bool = True
) -> VerifiedHttpResponse:
    """Verify the gateway's signature on ``answer``, its request hash against the bytes
    sent (when ``hashed``) and its body against the signed Content-Digest."""
    cert = gateway_certificate(pki)
    headers: dict[str, list[str]] = {}
    for name, value in answer.headers:
        headers.setdefault(name.lower(), []).append(value)
    hash_header = "x-road-request-hash" if dialect == "xroad" else "uxp-request-hash"
    verified = verify_response_signature(
        HttpResponseView(answer.status, headers),
        ResponseSignaturePolicy(request_hash_header=hash_header if hashed else None),
        {http_keyid(cert): cert}.get,
        datetime.now(UTC),
        expected_request_hash=request_hash(answer, dialect=dialect) if hashed else None,
    )
    checker = DigestChecker(verified.content_digest)
    checker.update(answer.body)
    checker.finish()
    return verified
