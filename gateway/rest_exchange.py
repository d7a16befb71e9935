"""One REST exchange (X-Road r1 or Trembita/UXP), stage by stage, as for SOAP.

    1. parse        path or headers to client, service, path; header values checked
    2. authenticate auth mode; RFC 9421 signature and Content-Digest against the body received
    3. resolve      the service (rest or openapi) in the registry snapshot
    4. authorise    service code, method and normalised path; default deny
    5. audit-in     request record durable before forwarding
    6. forward      the normalised path, filtered headers, body streamed from the spool
    7. reply        provider's status, headers and body spooled; X-Road headers set; signed
    8. audit-out    response record durable before the client sees a byte
    9. render       the provider's answer streamed from the spool, or obmin's error

Bodies are spooled (`SpooledBody`), so memory stays flat whatever their size.
"""

from __future__ import annotations

import asyncio
import base64
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
from gateway.audit import AuditError, AuditRecordDraft, Direction, body_digest
from gateway.context import ExchangeEnv
from gateway.errors import Fault, GatewayError, fault_for
from gateway.forward import is_tls_failure
from gateway.meta import (
    answer_list_clients,
    answer_rest_metaservice,
    answer_wsdl_query,
    is_rest_metaservice,
)
from gateway.provider_tls import provider_ssl
from gateway.ratelimit import RateLimited
from gateway.rest.auth import VerifiedRest, verify_http_signature
from gateway.rest.protocol import (
    HOP_BY_HOP,
    UXP_HEADERS,
    XROAD_HEADERS,
    RestError,
    RestRequestHead,
    filter_headers,
    parse_rest_head,
    render_error,
    rest_request_hash,
)
from gateway.spool import SpooledBody, TooLarge
from gateway.tls import check_tls_client
from registry import ClientEntry, ClientId, ServiceEntry, ServiceId, normalise_path
from registry.errors import InvalidIdentifier
from security.digest import content_digest_header
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
    """What the client port sends back: status, headers and a spooled body."""

    status: int
    headers: list[tuple[str, str]]
    body: SpooledBody | bytes


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

    def draft(
        self,
        direction: Direction,
        *,
        size: int,
        sha512: bytes,
        status: int | None,
        fault: Fault | None,
        duration_ms: float | None,
    ) -> AuditRecordDraft:
        head = self.head
        policy = self.service.audit_body if self.service is not None else "digest"
        if policy in ("plain", "encrypted"):
            policy = "digest"  # REST bodies may be huge: stored bodies come with issue 4
        return AuditRecordDraft(
            time=datetime.now(tz=self.incoming.received_at.tzinfo),
            direction=direction,
            request_id=self.request_id,
            protocol="rest",
            dialect=head.dialect if head else None,
            message_id=head.message_id if head else None,
            client=str(head.client) if head else (str(self.caller) if self.caller else None),
            service=str(head.service) if head else None,
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
            size=size,
            body_digest=None if policy == "none" else base64.b64encode(sha512).decode("ascii"),
            body_policy=policy,
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
    # Replay of signed messages is by message id, or by signature when the id was generated.
    replay_id = (
        head.message_id
        if not head.message_id_generated or signed is None
        else f"sig:{signed.signature_value_digest}"
    )
    await admit(
        env,
        entry,
        replay_id,
        signed_created=signed.created if signed else None,
        signed=signed is not None,
        now=incoming.received_at,
    )


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
    timeout = aiohttp.ClientTimeout(
        total=service.total_timeout, sock_connect=service.connect_timeout
    )
    data = incoming.body.chunks() if incoming.body.size else None
    reply = SpooledBody(
        limit=env.settings.limits.max_response_bytes, too_large_code="ServiceFailed.MessageTooLarge"
    )
    try:
        async with env.session.request(
            incoming.method,
            url,
            headers=headers,
            data=data,
            timeout=timeout,
            allow_redirects=False,
            ssl=provider_ssl(service, env.key_passphrase),
        ) as response:
            await reply.fill(response.content.iter_chunked(64 * 1024))
            return response.status, list(response.headers.items()), reply
    except TooLarge:
        reply.close()
        raise
    except TimeoutError as exc:
        reply.close()
        raise RestError(
            f"the provider did not answer within {service.total_timeout:g} s",
            code="ServiceFailed.Timeout",
        ) from exc
    except aiohttp.ClientSSLError as exc:
        reply.close()
        raise RestError(
            "the TLS connection to the provider failed (certificate not trusted or refused)",
            code="ServiceFailed.SslAuthenticationFailed",
        ) from exc
    except aiohttp.ClientError as exc:
        reply.close()
        if is_tls_failure(exc):
            raise RestError(
                "the TLS connection to the provider failed (certificate not trusted or refused)",
                code="ServiceFailed.SslAuthenticationFailed",
            ) from exc
        raise RestError(
            "the provider could not be reached or broke the connection",
            code="ServiceFailed.NetworkError",
        ) from exc


# Set by the gateway on every answer; the provider's copies are dropped.
_SIGNED_BY_GATEWAY = frozenset({"content-digest", "signature", "signature-input"})


def _response_headers(
    env: ExchangeEnv,
    head: RestRequestHead,
    request_id: str,
    request_hash: str,
    status: int,
    provider: list[tuple[str, str]],
    reply: SpooledBody,
    now: datetime,
) -> list[tuple[str, str]]:
    """The answer's headers: the provider's, less hop-by-hop and gateway-owned ones, plus the
    X-Road headers, a Content-Digest of the body and the gateway's RFC 9421 signature over
    ``@status``, ``content-digest`` and the request hash header (SPEC 5.3)."""
    names = head.names
    own = {names[k] for k in ("client", "service", "id", "request_id", "request_hash", "error")}
    own |= _SIGNED_BY_GATEWAY
    headers = [
        *((k, v) for k, v in provider if k.lower() not in HOP_BY_HOP and k.lower() not in own),
        (names["client"], str(head.client)),
        (names["service"], str(head.service)),
        (names["id"], head.message_id),
        (names["request_id"], request_id),
        (names["request_hash"], request_hash),
        ("Content-Digest", content_digest_header(reply.sha512_state(), "sha-512")),
    ]
    signature = sign_response(
        status,
        {k.lower(): v for k, v in headers},
        env.signer.key,
        env.signer.certificate,
        now,
        request_hash_header=names["request_hash"],
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
    exchange = _RestExchange(request_id=str(uuid.uuid4()), incoming=incoming)
    bound = log.bind(request_id=exchange.request_id, peer=incoming.peer)
    request_logged = False
    body = incoming.body
    try:
        # 1. parse
        head = parse_rest_head(incoming.method, incoming.target, incoming.header_map())
        exchange.head = head
        if too_large is not None:
            raise too_large  # noqa: TRY301 - refused here so that the refusal is audited
        # 2. authenticate, revocation, rate limit, replay
        await _authenticate_and_admit(env, incoming, head, exchange)
        # 3, 4. resolve and authorise (metaservices are answered by the gateway itself)
        meta = _is_meta_call(incoming.method, head)
        if not meta:
            exchange.service, exchange.path = resolve_and_authorise(env, head, incoming.method)
        # 5. audit-in
        request_draft = exchange.draft(
            "request",
            size=body.size,
            sha512=body.sha512(),
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
            status, provider_headers, reply = await forward(
                env, incoming, head, exchange.service, exchange.path, exchange.request_id
            )
        # 7. the reply: gateway headers
        request_hash = rest_request_hash(
            incoming.method, incoming.target, incoming.headers, body.sha512()
        )
        headers = _response_headers(
            env,
            head,
            exchange.request_id,
            request_hash,
            status,
            provider_headers,
            reply,
            datetime.now(UTC),
        )
        # 8. audit-out
        duration = (time.perf_counter() - started) * 1000
        response_draft = exchange.draft(
            "response",
            size=reply.size,
            sha512=reply.sha512(),
            status=status,
            fault=None,
            duration_ms=duration,
        )
        await env.audit.append([response_draft])
        bound.info("exchange", outcome="ok", status=status, duration_ms=round(duration, 2))
        _count(env, exchange, "ok", started)
        # 9. render
        return RestOutgoing(status, headers, reply)
    except Exception as exc:
        return await _refuse(env, exchange, exc, request_logged, started, bound)


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
        incoming = exchange.incoming.body
        drafts = (
            []
            if request_logged
            else [
                exchange.draft(
                    "request",
                    size=incoming.size,
                    sha512=incoming.sha512(),
                    status=None,
                    fault=fault,
                    duration_ms=None,
                )
            ]
        )
        drafts.append(
            exchange.draft(
                "response",
                size=len(body),
                sha512=base64.b64decode(body_digest(body)),
                status=fault.http_status,
                fault=fault,
                duration_ms=duration,
            )
        )
        try:
            await env.audit.append(drafts)
        except AuditError as audit_exc:
            bound.error("audit log write failed", reason=str(audit_exc))
            fault = fault_for(audit_exc)
            body, content_type = render_error(
                fault, exchange.request_id, accept, env.settings.fault_code_style
            )
    dialect_names = exchange.head.names if exchange.head else _default_names(exchange.incoming)
    extra = [("Retry-After", exc.retry_after_header)] if isinstance(exc, RateLimited) else []
    headers = [
        *extra,
        ("Content-Type", content_type),
        (dialect_names["error"], fault.full_code(env.settings.fault_code_style)),
        (dialect_names["request_id"], exchange.request_id),
    ]
    return RestOutgoing(fault.http_status, headers, body)


def _default_names(incoming: RestIncoming) -> Mapping[str, str]:
    return UXP_HEADERS if incoming.target.startswith("/restapi") else XROAD_HEADERS


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
        await _authenticate_and_admit(env, incoming, head, exchange)
        body = incoming.body
        await env.audit.append(
            [
                exchange.draft(
                    "request",
                    size=body.size,
                    sha512=body.sha512(),
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
                    size=len(answer.body),
                    sha512=hashlib.sha512(answer.body).digest(),
                    status=answer.status,
                    fault=None,
                    duration_ms=duration,
                )
            ]
        )
        bound.info("exchange", outcome="ok", metaservice=kind, duration_ms=round(duration, 2))
        return RestOutgoing(
            answer.status,
            [
                ("Content-Type", answer.content_type),
                (head.names["request_id"], exchange.request_id),
            ],
            answer.body,
        )
    except Exception as exc:
        return await _refuse(env, exchange, exc, request_logged, started, bound)
