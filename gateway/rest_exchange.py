"""One REST exchange (X-Road r1 or Trembita/UXP), stage by stage, as for SOAP.

    1. parse        path or headers to client, service, path; header values checked
    2. authenticate auth mode; RFC 9421 signature and Content-Digest against the body received;
                    revocation, rate limit, replay (message id, what was signed and nonce)
    2b. body        a JSON request body is validated (syntax, duplicate keys, depth, numbers)
    3. resolve      the service (rest or openapi) in the registry snapshot
    4. authorise    service code, method and normalised path; default deny
    5. audit-in     request record durable before forwarding
    6. forward      the normalised path, filtered headers, body streamed from the spool
    7. reply        provider's status, headers and body spooled; X-Road headers set; signed
    8. audit-out    response record durable before the client sees a byte
    9. render       the provider's answer streamed from the spool, or obmin's error

Bodies are spooled (`SpooledBody`), so memory stays flat whatever their size. Every answer,
obmin's own errors included, carries the X-Road headers known at that point, a
Content-Digest and the gateway's RFC 9421 signature (SPEC 5.3).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import aiohttp
import structlog

from gateway.admission import admit
from gateway.audit import AuditError, AuditRecordDraft, BodyFields, Direction
from gateway.context import ExchangeEnv
from gateway.errors import Fault, GatewayError, fault_for
from gateway.forward import is_tls_failure, provider_failure
from gateway.meta import (
    answer_list_clients,
    answer_rest_metaservice,
    answer_wsdl_query,
    is_rest_metaservice,
)
from gateway.ratelimit import RateLimited
from gateway.rest.auth import VerifiedRest, verify_http_signature
from gateway.rest.json_body import JsonLimits, check_json, is_json_media_type
from gateway.rest.protocol import (
    GATEWAY_OWNED,
    UXP_HEADERS,
    XROAD_HEADERS,
    Dialect,
    RestError,
    RestRequestHead,
    filter_headers,
    hop_by_hop_names,
    is_hop_by_hop,
    parse_rest_head,
    render_error,
    rest_request_hash,
)
from gateway.spool import SpooledBody, SpoolFailed, TooLarge
from gateway.tls import check_tls_client
from registry import ClientEntry, ClientId, ServiceEntry, ServiceId, normalise_path
from registry.errors import InvalidIdentifier
from security.digest import content_digest_header
from security.errors import SecurityError
from security.httpsig_response import sign_response

__all__ = ["RestIncoming", "RestOutgoing", "run_global_metaservice", "run_rest_exchange"]

log = structlog.get_logger("obmin.rest")


@dataclass(frozen=True, slots=True)
class RestIncoming:
    """A REST request as the client port received it; the body is already spooled."""

    method: str
    target: str  # raw path and query, as sent
    scheme: str
    authority: str
    headers: tuple[tuple[str, str], ...]
    body: SpooledBody
    peer: str
    received_at: datetime
    tls_client_cert: bytes | None = None  # DER, when the client came over HTTPS with one

    def header_map(self) -> dict[str, list[str]]:
        """Header values by lower-case name."""
        result: dict[str, list[str]] = {}
        for name, value in self.headers:
            result.setdefault(name.lower(), []).append(value)
        return result


@dataclass(slots=True)
class RestOutgoing:
    """What the client port sends back: status, headers and a spooled body.

    ``content_length`` is the provider's ``Content-Length`` of a HEAD answer, whose body is
    empty by definition (RFC 9110 9.3.2); None means the length of ``body``.
    """

    status: int
    headers: list[tuple[str, str]]
    body: SpooledBody | bytes
    content_length: int | None = None


@dataclass(slots=True)
class _RestExchange:
    request_id: str
    incoming: RestIncoming
    head: RestRequestHead | None = None
    client: ClientEntry | None = None
    auth_mode: str | None = None
    signer_thumbprint: str | None = None
    signature_digest: str | None = None
    service: ServiceEntry | None = None
    path: str | None = None
    caller: ClientId | None = None  # the client of a call without a service (listClients)
    body_complete: bool = True  # False when the body outgrew its limit while it was read

    @property
    def names(self) -> Mapping[str, str]:
        """The header names of the request's dialect."""
        return self.head.names if self.head else _default_names(self.incoming)

    def request_hash(self) -> str | None:
        """``X-Road-Request-Hash`` of the request received, or None if its body was not read
        whole (see `rest_request_hash`)."""
        if not self.body_complete:
            return None
        incoming, head = self.incoming, self.head
        dialect: Dialect = head.dialect if head else _default_dialect(incoming)
        body = incoming.body
        return rest_request_hash(
            incoming.method,
            incoming.target,
            incoming.headers,
            body.sha512() if body.size else None,
            dialect=dialect,
            request_id=self.request_id,
            generated_message_id=head.message_id if head and head.message_id_generated else None,
        )

    async def body(
        self, env: ExchangeEnv, direction: Direction, body: SpooledBody | bytes
    ) -> BodyFields:
        """The body fields of one direction's record, as the service's policy says: a
        stored body (``plain``, or sealed under ``encrypted``) up to
        ``audit.max_stored_body_bytes``, read back from its spool only then; a request body
        refused while it was read is never stored. Raises `AuditError`."""
        policy = self.service.audit_body if self.service is not None else "digest"
        if isinstance(body, bytes):
            return await env.bodies.fields_of(body, policy, self.request_id, direction)
        spool = body
        complete = self.body_complete or direction == "response"

        async def load() -> bytes:
            small = spool.small_bytes()
            if small is not None:
                return small
            try:
                return await asyncio.to_thread(spool.read_all_blocking)
            except SpoolFailed as exc:
                raise AuditError(f"the {direction} body cannot be read back: {exc}") from exc

        return await env.bodies.fields(
            policy,
            self.request_id,
            direction,
            size=spool.size,
            sha512=spool.sha512(),
            load=load if complete else None,
        )

    def draft(
        self,
        direction: Direction,
        *,
        body: BodyFields,
        status: int | None,
        fault: Fault | None,
        duration_ms: float | None,
    ) -> AuditRecordDraft:
        head = self.head
        return AuditRecordDraft(
            time=datetime.now(tz=self.incoming.received_at.tzinfo),
            direction=direction,
            request_id=self.request_id,
            protocol="rest",
            dialect=head.dialect if head else None,
            message_id=head.message_id if head else None,
            client=str(head.client) if head else (str(self.caller) if self.caller else None),
            service=str(head.service) if head and self.caller is None else None,
            user_id=head.user_id if head else None,
            issue=head.issue if head else None,
            represented_party=head.represented_party if head else None,
            subject_id=head.subject_id if head else None,
            purpose_ids=head.purpose_ids if head else (),
            rest_method=self.incoming.method,
            rest_path=self.path or (head.path if head else None),
            http_status=status,
            fault_code=None if fault is None else fault.full_code(),
            outcome="ok" if fault is None else "fault",
            **body,
            signature_value_digest=self.signature_digest,
            signer_thumbprint=self.signer_thumbprint,
            auth_mode=self.auth_mode,  # type: ignore[arg-type]
            peer=self.incoming.peer,
            duration_ms=duration_ms,
        )


class RestAccessError(GatewayError):
    """Unknown, disabled or wrong-type service, or no right to call it."""


# --- 2. authenticate ------------------------------------------------------------------------


def authenticate(
    env: ExchangeEnv, incoming: RestIncoming, head: RestRequestHead
) -> tuple[ClientEntry, str, VerifiedRest | None]:
    """Stage 2: (client entry, auth mode, what the signature proved if the mode signs)."""
    entry = env.registry.find_client(head.client)
    if entry is None:
        raise RestError(f"client {head.client} is not registered", code="UnknownMember")
    if entry.auth == "none":
        if not env.settings.allow_unauthenticated_clients:
            raise RestError(
                "unauthenticated clients are not allowed by this gateway", code="MissingSignature"
            )
        return entry, "none", None
    if entry.auth in ("mtls", "signature+mtls"):
        check_tls_client(entry, incoming.tls_client_cert)
        if entry.auth == "mtls":
            return entry, "mtls", None
    return entry, entry.auth, verify_http_signature(env, incoming, head, entry)


async def _authenticate_and_admit(
    env: ExchangeEnv, incoming: RestIncoming, head: RestRequestHead, exchange: _RestExchange
) -> None:
    """Stage 2 in full: authenticate, check the signer's revocation, rate limit, replay."""
    entry, mode, signed = authenticate(env, incoming, head)
    exchange.client, exchange.auth_mode = entry, mode
    if signed is not None:  # not revoked (OCSP/CRL per anchor)
        anchors = env.registry.trust_anchor_entries
        await env.revocation.check_signer(signed.signer, anchors, incoming.received_at)
        exchange.signer_thumbprint = signed.signer.thumbprint_sha256
        exchange.signature_digest = signed.signature_value_digest
    # Replay: the message id, the nonce, and what was signed (the digest of keyid and
    # signature base, never the signature bytes: ECDSA's (r, n - s) verifies too, so a
    # re-encoded copy of a request without an id would pass as new).
    await admit(
        env,
        entry,
        head.message_id,
        signed_created=signed.created if signed else None,
        signed=signed is not None,
        now=incoming.received_at,
        also=_nonce_ids(signed),
        signed_digest=signed.signature_base_digest if signed is not None else None,
    )


# A replay name that no message id can spell: message ids never hold control characters.
_NONCE = "\x00rfc9421-nonce\x00"


def _nonce_ids(signed: VerifiedRest | None) -> tuple[str, ...]:
    """An RFC 9421 ``nonce`` must be new for the client too (SPEC 5.5)."""
    return (_NONCE + signed.nonce,) if signed is not None and signed.nonce is not None else ()


async def check_json_body(env: ExchangeEnv, incoming: RestIncoming) -> None:
    """Stage 2b: a body sent as JSON must be sound JSON before any provider parses it.

    Small bodies are checked on the loop; larger ones in a worker thread, read from the
    spool. Bodies above ``limits.max_json_validation_bytes`` are refused, never read whole.
    """
    body = incoming.body
    # aiohttp's parser refuses a request with two Content-Type headers (400) before this.
    declared = [c for c in incoming.header_map().get("content-type", []) if is_json_media_type(c)]
    if not declared or body.size == 0:
        return
    limits = env.settings.limits
    json_limits = JsonLimits(
        max_depth=limits.max_json_depth,
        max_number_digits=limits.max_json_number_digits,
        max_bytes=limits.max_json_validation_bytes,
    )
    if body.size > json_limits.max_bytes:
        raise RestError(
            f"JSON request bodies are validated before they are forwarded, and this one "
            f"({body.size} bytes) is larger than the validation limit of "
            f"{json_limits.max_bytes} bytes (limits.max_json_validation_bytes)",
            code="MessageTooLarge",
        )
    small = body.small_bytes()
    if small is not None and len(small) <= _JSON_ON_LOOP:
        check_json(small, declared[0], json_limits)
        return
    await asyncio.to_thread(_check_spooled_json, body, declared[0], json_limits)


_JSON_ON_LOOP = 64 * 1024


def _check_spooled_json(body: SpooledBody, content_type: str, limits: JsonLimits) -> None:
    check_json(body.read_all_blocking(), content_type, limits)


# --- 3. and 4. ------------------------------------------------------------------------------


_SMUGGLED = re.compile(r"%(?:2[fF]|5[cC]|00)|\\")


def resolve_and_authorise(
    env: ExchangeEnv, head: RestRequestHead, method: str
) -> tuple[ServiceEntry, str]:
    """Stages 3 and 4: the service and the normalised path that was authorised."""
    service = env.registry.find_service(head.service)
    if service is None:
        raise RestAccessError(f"service {head.service} is not registered", code="UnknownService")
    if service.disabled:
        notice = f": {service.disabled_notice}" if service.disabled_notice else ""
        raise RestAccessError(f"service {head.service} is disabled{notice}", code="ServiceDisabled")
    if service.type not in ("rest", "openapi"):
        raise RestAccessError(
            f"service {head.service} is a {service.type} service, not REST", code="ServiceType"
        )
    # Encoded "/", "\" and NUL are refused outright: a provider that decodes them would
    # see a different path than the one authorised here.
    path = None if _SMUGGLED.search(head.path) else normalise_path(head.path)
    if path is None:
        raise RestError(
            "the request path is not a valid path (.. above the root, bad escape)",
            code="InvalidRequest",
        )
    if not env.registry.is_allowed(head.client, head.service, method, path):
        raise RestAccessError(
            f"client {head.client} may not call {method} {path} of {head.service}",
            code="AccessDenied",
        )
    return service, path


# --- 6. forward -----------------------------------------------------------------------------


async def forward(
    env: ExchangeEnv,
    incoming: RestIncoming,
    head: RestRequestHead,
    service: ServiceEntry,
    path: str,
    request_id: str,
) -> tuple[int, list[tuple[str, str]], SpooledBody]:
    """Stage 6: call the provider; its answer comes back spooled."""
    url = service.url.rstrip("/") + (path if path != "/" else "")
    if head.query:
        url = f"{url}?{head.query}"
    names = head.names
    headers = [
        *(
            h
            for h in filter_headers(incoming.headers, head.dialect)
            if h[0].lower() not in (names["service"], names["id"])
        ),
        (names["service"], str(head.service)),
        (names["id"], head.message_id),
        (names["request_id"], request_id),
    ]
    if incoming.body.size:  # the spool knows the size: no chunked framing the client did not use
        headers.append(("Content-Length", str(incoming.body.size)))
    timeout = aiohttp.ClientTimeout(
        total=service.total_timeout, sock_connect=service.connect_timeout
    )
    retry = service.retry_idempotent and incoming.method in IDEMPOTENT_METHODS
    ssl_context = await env.provider_tls.context(service)
    for attempt in (1, 2):
        reply = SpooledBody(
            limit=env.settings.limits.max_response_bytes,
            too_large_code="ServiceFailed.MessageTooLarge",
        )
        try:
            async with env.session.request(
                incoming.method,
                url,
                headers=headers,
                data=incoming.body.chunks() if incoming.body.size else None,
                timeout=timeout,
                allow_redirects=False,
                ssl=ssl_context,
                # Only what the client sent: no User-Agent (SPEC 3.2), Accept or
                # Accept-Encoding of aiohttp's own, no Content-Type the client did not declare.
                skip_auto_headers=_NOT_AUTOMATIC,
            ) as response:
                await reply.fill(response.content.iter_chunked(64 * 1024))
                return response.status, list(response.headers.items()), reply
        except TooLarge:
            reply.close()
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            reply.close()
            broken = (
                isinstance(exc, _BROKEN)
                and not isinstance(exc, aiohttp.ClientConnectorError)
                and not is_tls_failure(exc)
            )
            if retry and attempt == 1 and broken:
                log.info(
                    "provider connection broke; retrying the idempotent call once",
                    request_id=request_id,
                    service=str(service.id),
                    reason=str(exc),
                )
                continue
            raise provider_failure(exc, service.total_timeout) from exc
    raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover


# RFC 9110 9.2.2; POST and PATCH are never retried.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A connection that broke once the request was sent (the provider may have acted on it).
_BROKEN = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)

_NOT_AUTOMATIC = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# Set by the gateway on every answer; the provider's copies are dropped.
_SIGNED_BY_GATEWAY = frozenset({"content-digest", "signature", "signature-input"})


def _provider_headers(
    names: Mapping[str, str], provider: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The provider's headers that reach the client: no hop-by-hop, none the gateway sets."""
    own = {names[k] for k in ("client", "service", "id")} | GATEWAY_OWNED | _SIGNED_BY_GATEWAY
    hop = hop_by_hop_names(provider)
    return [(k, v) for k, v in provider if not is_hop_by_hop(k, hop) and k.lower() not in own]


def _gateway_headers(exchange: _RestExchange, request_hash: str | None) -> list[tuple[str, str]]:
    """The X-Road headers obmin sets on an answer, as far as the exchange got to know them."""
    names, head = exchange.names, exchange.head
    headers: list[tuple[str, str]] = []
    if head is not None:
        headers.append((names["client"], str(head.client)))
        if exchange.caller is None:  # a global metaservice names no service
            headers.append((names["service"], str(head.service)))
        headers.append((names["id"], head.message_id))
    headers.append((names["request_id"], exchange.request_id))
    if request_hash is not None:
        headers.append((names["request_hash"], request_hash))
    return headers


def _signed(
    env: ExchangeEnv,
    names: Mapping[str, str],
    status: int,
    headers: list[tuple[str, str]],
    body_sha512: hashlib._Hash,
) -> list[tuple[str, str]]:
    """``headers`` plus a Content-Digest of the body and the gateway's RFC 9421 signature
    over ``@status``, ``content-digest``, the request hash and the X-Road headers obmin set
    (SPEC 5.3). Raises `SigningError` when the gateway key cannot sign."""
    headers = [*headers, ("Content-Digest", content_digest_header(body_sha512, "sha-512"))]
    lowered = {k.lower(): v for k, v in headers}
    hash_header = names["request_hash"]
    signature = sign_response(
        status,
        lowered,
        env.signer.key,
        env.signer.certificate,
        datetime.now(UTC),
        request_hash_header=hash_header if hash_header in lowered else None,
        also_cover=tuple(names[k] for k in ("request_id", "client", "service", "id", "error")),
    )
    return [*headers, *signature.items()]


# --- the exchange ---------------------------------------------------------------------------


async def run_rest_exchange(
    env: ExchangeEnv,
    incoming: RestIncoming,
    *,
    too_large: TooLarge | None = None,
) -> RestOutgoing:
    """Run one REST exchange through stages 1-9.

    ``too_large`` is the error met while the request body was read: the exchange is then
    refused (and audited) as soon as the head has been parsed.
    """
    started = time.perf_counter()
    exchange = _RestExchange(
        request_id=str(uuid.uuid4()), incoming=incoming, body_complete=too_large is None
    )
    bound = log.bind(request_id=exchange.request_id, peer=incoming.peer)
    request_logged = False
    body = incoming.body
    reply: SpooledBody | None = None
    try:
        # 1. parse
        head = parse_rest_head(incoming.method, incoming.target, incoming.header_map())
        exchange.head = head
        if too_large is not None:
            raise too_large  # noqa: TRY301 - refused here so that the refusal is audited
        env.freshness.check(incoming.received_at)  # while the registry is outdated
        # 2. authenticate, revocation, rate limit, replay
        await _authenticate_and_admit(env, incoming, head, exchange)
        # 2b. a JSON body is sound JSON
        await check_json_body(env, incoming)
        # 3, 4. resolve and authorise (metaservices are answered by the gateway itself)
        meta = _is_meta_call(incoming.method, head)
        if not meta:
            exchange.service, exchange.path = resolve_and_authorise(env, head, incoming.method)
        # 5. audit-in
        request_draft = exchange.draft(
            "request",
            body=await exchange.body(env, "request", body),
            status=None,
            fault=None,
            duration_ms=None,
        )
        await env.audit.append([request_draft])
        request_logged = True
        # 6. forward
        if exchange.service is None or exchange.path is None:
            status, provider_headers, reply = await _answer_meta(env, head)
        else:
            service = exchange.service
            with env.breakers.for_service(service).guard(str(service.id)):  # fail fast if down
                status, provider_headers, reply = await forward(
                    env, incoming, head, service, exchange.path, exchange.request_id
                )
        # 7. the reply: the provider's headers, the gateway's, signed
        headers = _signed(
            env,
            head.names,
            status,
            [
                *_provider_headers(head.names, provider_headers),
                *_gateway_headers(exchange, exchange.request_hash()),
            ],
            reply.sha512_state(),
        )
        # 8. audit-out
        duration = (time.perf_counter() - started) * 1000
        response_draft = exchange.draft(
            "response",
            body=await exchange.body(env, "response", reply),
            status=status,
            fault=None,
            duration_ms=duration,
        )
        await env.audit.append([response_draft])
        bound.info("exchange", outcome="ok", status=status, duration_ms=round(duration, 2))
        _count(env, exchange, "ok", started)
        # 9. render
        return RestOutgoing(status, headers, reply, _head_length(incoming, provider_headers))
    except BaseException as exc:
        if reply is not None:  # not handed on: the provider's spooled body goes (a cancel too)
            reply.close()
        if not isinstance(exc, Exception):
            raise
        return await _refuse(env, exchange, exc, request_logged, started, bound)


def _head_length(incoming: RestIncoming, provider: list[tuple[str, str]]) -> int | None:
    """The provider's Content-Length of a HEAD answer (the length a GET would have)."""
    if incoming.method != "HEAD":
        return None
    for name, value in provider:
        if name.lower() == "content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def _is_meta_call(method: str, head: RestRequestHead) -> bool:
    return method == "GET" and head.path == "/" and is_rest_metaservice(head.service.service_code)


async def _answer_meta(
    env: ExchangeEnv, head: RestRequestHead
) -> tuple[int, list[tuple[str, str]], SpooledBody]:
    answer = await asyncio.to_thread(
        answer_rest_metaservice,
        env.registry,
        head.client,
        head.service.provider,
        head.service.service_code,
        head.query,
        read_document=Path.read_bytes,
        limits=env.limits,
    )
    reply = SpooledBody(limit=len(answer.body) + 1)
    await reply.write(answer.body)
    return answer.status, [("Content-Type", answer.content_type)], reply


def _count(env: ExchangeEnv, exchange: _RestExchange, outcome: str, started: float) -> None:
    env.metrics.count_exchange(
        exchange.client.id if exchange.client else None,
        exchange.service.id if exchange.service else None,
        "rest",
        outcome,
        time.perf_counter() - started,
    )


async def _refuse(
    env: ExchangeEnv,
    exchange: _RestExchange,
    exc: Exception,
    request_logged: bool,
    started: float,
    bound: structlog.typing.FilteringBoundLogger,
) -> RestOutgoing:
    fault = fault_for(exc)
    if fault.code == "InternalError":
        bound.exception("exchange failed with an internal error")
    else:
        bound.info("exchange refused", fault=fault.full_code(), reason=str(exc))
    _count(env, exchange, fault.full_code(), started)
    accept = dict(exchange.incoming.header_map()).get("accept", [None])[0]
    body, content_type = render_error(
        fault, exchange.request_id, accept, env.settings.fault_code_style
    )
    if not isinstance(exc, AuditError):
        duration = (time.perf_counter() - started) * 1000
        try:
            drafts = (
                []
                if request_logged
                else [
                    exchange.draft(
                        "request",
                        body=await exchange.body(env, "request", exchange.incoming.body),
                        status=None,
                        fault=fault,
                        duration_ms=None,
                    )
                ]
            )
            drafts.append(
                exchange.draft(
                    "response",
                    body=await exchange.body(env, "response", body),
                    status=fault.http_status,
                    fault=fault,
                    duration_ms=duration,
                )
            )
            await env.audit.append(drafts)
        except AuditError as audit_exc:
            bound.error("audit log write failed", reason=str(audit_exc))
            fault = fault_for(audit_exc)
            body, content_type = render_error(
                fault, exchange.request_id, accept, env.settings.fault_code_style
            )
    names = exchange.names
    extra = [("Retry-After", exc.retry_after_header)] if isinstance(exc, RateLimited) else []
    headers = [
        *extra,
        ("Content-Type", content_type),
        (names["error"], fault.full_code(env.settings.fault_code_style)),
        *_gateway_headers(exchange, exchange.request_hash()),
    ]
    try:
        headers = _signed(env, names, fault.http_status, headers, hashlib.sha512(body))
    except SecurityError as sign_exc:  # still answer, unsigned, rather than not at all
        bound.error("the error answer could not be signed", reason=str(sign_exc))
    return RestOutgoing(fault.http_status, headers, body)


def _default_dialect(incoming: RestIncoming) -> Dialect:
    return "uxp" if incoming.target.startswith("/restapi") else "xroad"


def _default_names(incoming: RestIncoming) -> Mapping[str, str]:
    return UXP_HEADERS if _default_dialect(incoming) == "uxp" else XROAD_HEADERS


GlobalMeta = Literal["listClients", "wsdl"]


def _caller(headers: Mapping[str, list[str]]) -> tuple[str, ClientId]:
    name = "uxp-client" if "uxp-client" in headers else "x-road-client"
    raw = headers.get(name, [None])[0]
    if raw is None:
        raise RestError(
            "header X-Road-Client (or Uxp-Client) is required", code="MissingHeaderField"
        )
    try:
        return name, ClientId.parse(raw.strip())
    except InvalidIdentifier as exc:
        raise RestError(f"header {name}: {exc}", code="InvalidClientIdentifier") from exc


async def run_global_metaservice(
    env: ExchangeEnv,
    incoming: RestIncoming,
    kind: GlobalMeta,
) -> RestOutgoing:
    """``GET /listClients`` and Trembita's ``GET /wsdl?...``: authenticated and audited.

    The caller names itself with ``X-Road-Client`` (or ``Uxp-Client``) and authenticates as
    for any other call; the answer comes from the registry, not from a provider.
    """
    started = time.perf_counter()
    exchange = _RestExchange(request_id=str(uuid.uuid4()), incoming=incoming)
    bound = log.bind(request_id=exchange.request_id, peer=incoming.peer)
    request_logged = False
    try:
        headers = incoming.header_map()
        name, caller = _caller(headers)
        exchange.caller = caller
        exchange.path = incoming.target.partition("?")[0]
        head = RestRequestHead(
            dialect="uxp" if name == "uxp-client" else "xroad",
            client=caller,
            service=ServiceId(caller, kind),
            path="/",
            query="",
            message_id=exchange.request_id,
            message_id_generated=True,
            user_id=None,
            issue=None,
            represented_party=None,
            subject_id=None,
            purpose_ids=(),
            consent_ref=None,
        )
        exchange.head = head
        env.freshness.check(incoming.received_at)  # while the registry is outdated
        await _authenticate_and_admit(env, incoming, head, exchange)
        body = incoming.body
        await env.audit.append(
            [
                exchange.draft(
                    "request",
                    body=await exchange.body(env, "request", body),
                    status=None,
                    fault=None,
                    duration_ms=None,
                )
            ]
        )
        request_logged = True
        query = incoming.target.partition("?")[2]
        if kind == "listClients":
            answer = answer_list_clients(env.registry, query, headers.get("accept", [None])[0])
        else:
            answer = await asyncio.to_thread(
                answer_wsdl_query,
                env.registry,
                query,
                read_document=Path.read_bytes,
                limits=env.limits,
            )
        duration = (time.perf_counter() - started) * 1000
        await env.audit.append(
            [
                exchange.draft(
                    "response",
                    body=await exchange.body(env, "response", answer.body),
                    status=answer.status,
                    fault=None,
                    duration_ms=duration,
                )
            ]
        )
        bound.info("exchange", outcome="ok", metaservice=kind, duration_ms=round(duration, 2))
        answer_headers = [
            ("Content-Type", answer.content_type),
            *_gateway_headers(exchange, exchange.request_hash()),
        ]
        return RestOutgoing(
            answer.status,
            _signed(env, head.names, answer.status, answer_headers, hashlib.sha512(answer.body)),
            answer.body,
        )
    except Exception as exc:
        return await _refuse(env, exchange, exc, request_logged, started, bound)
