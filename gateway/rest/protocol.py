"""X-Road REST r1 and the Trembita/UXP dialect: parse requests, render errors. Pure, no I/O.

Both dialects become one `RestRequestHead`: who calls, which service, which path, and the
X-Road header values. The pipeline never looks at dialect-specific header names again.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

import orjson
from lxml import etree

from gateway.errors import Fault, FaultCodeStyle, GatewayError
from registry.errors import InvalidIdentifier
from registry.identifiers import ClientId, ServiceId

__all__ = [
    "GATEWAY_OWNED",
    "HOP_BY_HOP",
    "UXP_HEADERS",
    "XROAD_HEADERS",
    "Dialect",
    "RestError",
    "RestRequestHead",
    "filter_headers",
    "hop_by_hop_names",
    "is_hop_by_hop",
    "parse_rest_head",
    "render_error",
    "rest_request_hash",
]

Dialect = Literal["xroad", "uxp"]

# SPEC 3.2: never forwarded, either way; nor any ``proxy-*`` header, nor any header that the
# message's own ``Connection`` header names (RFC 9110 7.6.1: those are hop-by-hop too).
HOP_BY_HOP = frozenset(
    {
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
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
    }
)

XROAD_HEADERS = {
    "client": "x-road-client",
    "service": "x-road-service",
    "id": "x-road-id",
    "user_id": "x-road-userid",
    "issue": "x-road-issue",
    "represented_party": "x-road-represented-party",
    "security_server": "x-road-security-server",
    "request_id": "x-road-request-id",
    "request_hash": "x-road-request-hash",
    "error": "x-road-error",
}
UXP_HEADERS = {
    "client": "uxp-client",
    "service": "uxp-service",
    "id": "uxp-queryid",
    "user_id": "uxp-userid",
    "issue": "uxp-issue",
    "represented_party": "uxp-represented-party",
    "security_server": "uxp-security-server",
    "request_id": "uxp-transaction-id",
    "request_hash": "uxp-request-hash",
    "error": "uxp-error",
}


# Set only by a gateway, in either dialect: whatever a client or a provider sends is dropped.
GATEWAY_OWNED = frozenset(
    names[key]
    for names in (XROAD_HEADERS, UXP_HEADERS)
    for key in ("request_id", "request_hash", "error")
)


class RestError(GatewayError):
    """A REST request breaks the X-Road REST protocol; ``code`` names the rule broken."""


@dataclass(frozen=True, slots=True)
class RestRequestHead:
    """A REST request's routing and X-Road fields, parsed and validated."""

    dialect: Dialect
    client: ClientId
    service: ServiceId
    path: str  # the provider-side path, still percent-encoded as received
    query: str
    message_id: str
    message_id_generated: bool
    user_id: str | None
    issue: str | None
    represented_party: str | None
    subject_id: str | None
    purpose_ids: tuple[str, ...]
    consent_ref: str | None

    @property
    def names(self) -> Mapping[str, str]:
        """The header names of this dialect (``client`` -> ``x-road-client`` ...)."""
        return XROAD_HEADERS if self.dialect == "xroad" else UXP_HEADERS


def _single(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RestError(f"header {name} appears more than once", code="DuplicateHeaderField")
    value = values[0]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise RestError(f"header {name} contains control characters", code="InvalidHeader")
    return value.strip()


def _identifier_part(raw: str, what: str) -> str:
    decoded = unquote(raw, errors="strict")
    if not decoded:
        raise RestError(f"{what} is empty", code="InvalidServiceIdentifier")
    return decoded


def _client(value: str | None, header: str) -> ClientId:
    if value is None:
        raise RestError(f"header {header} is required", code="MissingHeaderField")
    try:
        return ClientId.parse(value)
    except InvalidIdentifier as exc:
        raise RestError(f"header {header}: {exc}", code="InvalidClientIdentifier") from exc


def _split_target(target: str) -> tuple[str, str]:
    path, _, query = target.partition("?")
    return path, query


def _r1(target: str) -> tuple[ServiceId, str, str]:
    path, query = _split_target(target)
    segments = path.split("/")  # "", "r1", INSTANCE, CLASS, MEMBER, SUBSYSTEM, CODE, rest...
    if len(segments) < 7:
        raise RestError(
            "the path must be /r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE[/path]",
            code="InvalidRequest",
        )
    try:
        parts = [_identifier_part(s, "service identifier part") for s in segments[2:7]]
        service = ServiceId(ClientId(*parts[:4]), parts[4])
    except (InvalidIdentifier, UnicodeDecodeError) as exc:
        raise RestError(
            f"service identifier in the path: {exc}", code="InvalidServiceIdentifier"
        ) from exc
    rest = "/" + "/".join(segments[7:]) if len(segments) > 7 else ""
    return service, rest, query


def _uxp(target: str, service_header: str | None) -> tuple[ServiceId, str, str]:
    path, query = _split_target(target)
    if service_header is None:
        raise RestError("header uxp-service is required", code="MissingHeaderField")
    try:
        service = ServiceId.parse(service_header)
    except InvalidIdentifier as exc:
        raise RestError(f"header uxp-service: {exc}", code="InvalidServiceIdentifier") from exc
    return service, path[len("/restapi") :], query


def parse_rest_head(method: str, target: str, headers: Mapping[str, list[str]]) -> RestRequestHead:
    """Parse a REST request of either dialect; ``headers`` have lower-case names."""
    if target.startswith("/r1/"):
        dialect: Dialect = "xroad"
        names = XROAD_HEADERS
        service, path, query = _r1(target)
    elif target == "/restapi" or target.startswith(("/restapi/", "/restapi?")):
        dialect = "uxp"
        names = UXP_HEADERS
        service, path, query = _uxp(target, _single(headers, "uxp-service"))
    else:
        raise RestError("the path is neither /r1/... nor /restapi/...", code="InvalidRequest")
    client = _client(_single(headers, names["client"]), names["client"])
    message_id = _single(headers, names["id"])
    if dialect == "uxp" and message_id is None:
        message_id = _single(headers, "uxp-id")
    generated = message_id is None
    if message_id is None:
        message_id = f"{client.instance}-{uuid.uuid4()}"
    purposes = _single(headers, "uxp-purpose-ids")
    return RestRequestHead(
        dialect=dialect,
        client=client,
        service=service,
        path=path or "/",
        query=query,
        message_id=message_id,
        message_id_generated=generated,
        user_id=_single(headers, names["user_id"]),
        issue=_single(headers, names["issue"]),
        represented_party=_single(headers, names["represented_party"]),
        subject_id=_single(headers, "uxp-subject-id"),
        purpose_ids=tuple(p.strip() for p in purposes.split(",") if p.strip()) if purposes else (),
        consent_ref=_single(headers, "uxp-consent-ref"),
    )


def hop_by_hop_names(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The hop-by-hop header names of one message: `HOP_BY_HOP` and those its ``Connection``
    header lists (lower case). ``proxy-*`` names are matched by `is_hop_by_hop`."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def is_hop_by_hop(name: str, hop: frozenset[str]) -> bool:
    """Whether header ``name`` stays on this hop (``hop`` from `hop_by_hop_names`)."""
    lowered = name.lower()
    return lowered in hop or lowered.startswith("proxy-")


def filter_headers(headers: Iterable[tuple[str, str]], dialect: Dialect) -> list[tuple[str, str]]:
    """Headers that may pass to the provider, in order: no hop-by-hop ones, none that only a
    gateway sets (request id, request hash, error, in either dialect); the client's other
    X-Road headers pass, as in X-Road. ``dialect`` is the request's (for symmetry with the
    other helpers: the rule is the same for both)."""
    own = GATEWAY_OWNED
    listed = list(headers)
    hop = hop_by_hop_names(listed)
    return [(k, v) for k, v in listed if not is_hop_by_hop(k, hop) and k.lower() not in own]


# The names X-Road's security servers give the headers they add to a request (MimeUtils).
_ADDED_NAMES = {
    "xroad": ("X-Road-Request-Id", "X-Road-Id"),
    "uxp": ("Uxp-Transaction-Id", "Uxp-Queryid"),
}


def rest_request_hash(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body_sha512: bytes | None,
    *,
    dialect: Dialect,
    request_id: str,
    generated_message_id: str | None,
) -> str:
    """``X-Road-Request-Hash``: base64 of SHA512(SHA512(head) + SHA512(body)), or of
    SHA512(head) when the request has no body (X-Road PR-REST 4.3).

    ``head`` is the request as X-Road's security servers serialise it (``RestRequest``): the
    method, CRLF, the target (raw path and query, exactly as sent), CRLF, then one
    ``Name:Value`` CRLF line per header that obmin forwards (`filter_headers`: the client's
    lines in the order and spelling sent, values without surrounding whitespace), then
    ``X-Road-Request-Id:<request id>`` and, when obmin generated the message id,
    ``X-Road-Id:<id>`` (``Uxp-Transaction-Id`` and ``Uxp-Queryid`` in the UXP dialect). A
    client can recompute it from the bytes it sent and the response's headers.
    """
    request_id_name, id_name = _ADDED_NAMES[dialect]
    lines = [*filter_headers(headers, dialect), (request_id_name, request_id)]
    if generated_message_id is not None:
        lines.append((id_name, generated_message_id))
    head = hashlib.sha512()
    head.update(f"{method}\r\n{target}\r\n".encode("utf-8", "surrogateescape"))
    for name, value in lines:
        head.update(f"{name}:{value}\r\n".encode("utf-8", "surrogateescape"))
    if body_sha512 is None:
        return base64.b64encode(head.digest()).decode("ascii")
    outer = hashlib.sha512(head.digest() + body_sha512)
    return base64.b64encode(outer.digest()).decode("ascii")


def _prefers_xml(accept: str | None) -> bool:
    if not accept:
        return False
    best_xml = best_json = -1.0
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if media in ("application/xml", "text/xml"):
            best_xml = max(best_xml, quality)
        elif media in ("application/json", "*/*", "application/*"):
            best_json = max(best_json, quality)
    return best_xml > best_json


def render_error(
    fault: Fault, request_id: str, accept: str | None, style: FaultCodeStyle = "legacy"
) -> tuple[bytes, str]:
    """obmin's own REST error: ``{"type", "message", "detail"}`` or its XML form."""
    code = fault.full_code(style)
    if _prefers_xml(accept):
        root = etree.Element("error")
        etree.SubElement(root, "type").text = code
        etree.SubElement(root, "message").text = fault.message
        etree.SubElement(root, "detail").text = request_id
        body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return body, "application/xml; charset=utf-8"
    body = orjson.dumps({"type": code, "message": fault.message, "detail": request_id})
    return body, "application/json; charset=utf-8"
