"""One SOAP exchange, stage by stage. Read top to bottom, this is the security argument.

    1. parse        HTTP method, Content-Type, multipart framing, hardened XML, X-Road header
    2. authenticate the client's auth mode; signature verified, signer bound to the client
    3. resolve      the service in the registry snapshot the exchange started with
    4. authorise    access rights, default deny
    5. audit-in     request record durable before anything leaves the gateway
    6. forward      to the provider, bounded in time and size
    7. check reply  Content-Type, envelope, echoed headers; requestHash added; signed
    8. audit-out    response record durable before the client sees the answer
    9. render       the provider's answer, or obmin's fault with the request id

Every stage either returns a value the next stage needs or raises one of our coded errors;
`run_soap_exchange` turns an error into a fault, audits the refusal and renders it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog
from lxml import etree

from gateway.admission import admit
from gateway.audit import AuditError, AuditRecordDraft, Direction
from gateway.context import ExchangeEnv
from gateway.errors import Fault, GatewayError, fault_for
from gateway.forward import ProviderReply, forward_request
from gateway.meta import answer_soap_metaservice, is_metaservice
from gateway.soap.envelope import SoapEnvelope, parse_envelope
from gateway.soap.mime import ProtocolError, SoapPayload, parse_content_type, split_soap_payload
from gateway.soap.render import render_fault, request_hash, set_request_hash
from gateway.soap.xml import XmlLimits, parse_untrusted_xml
from gateway.tls import check_tls_client
from registry import ClientEntry, ServiceEntry
from registry.models import AuthMode
from security import VerifiedSoap, sign_soap, verify_soap_signature

__all__ = ["IncomingRequest", "OutgoingResponse", "run_soap_exchange"]

log = structlog.get_logger("obmin.soap")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """What the client port received, before any interpretation."""

    method: str
    content_type: str | None
    soap_action: str | None
    body: bytes
    peer: str
    received_at: datetime
    tls_client_cert: bytes | None = None  # DER, when the client came over HTTPS with one


@dataclass(frozen=True, slots=True)
class OutgoingResponse:
    """What the client port sends back."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """Stage 1's result: the SOAP part, its tree and its X-Road header."""

    payload: SoapPayload
    envelope: SoapEnvelope


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """Stage 2's result: who the client is and how we know."""

    entry: ClientEntry
    auth_mode: AuthMode
    verified: VerifiedSoap | None


class AuthError(GatewayError):
    """The client could not be authenticated as the one its header names."""


class AccessError(GatewayError):
    """The service is unknown, disabled, of another type, or not for this client."""


# --- 1. parse -------------------------------------------------------------------------------


def _soap_action_operation(value: str | None) -> str | None:
    """The operation a SOAPAction header names (its last URI segment), or None if empty."""
    if value is None or value in ("", '""'):
        return None
    quoted = value.startswith('"') and value.endswith('"') and len(value) >= 2
    inner = value[1:-1] if quoted else value
    if (
        (value.startswith('"') != value.endswith('"'))
        or '"' in inner
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in inner)
    ):
        raise ProtocolError("the SOAPAction header is malformed", code="InvalidSoapAction")
    for separator in ("#", "/", ":"):
        inner = inner.rpartition(separator)[2]
    return inner or None


def _check_soap_action(value: str | None, envelope: SoapEnvelope) -> None:
    # SOAPAction spoofing: a provider that dispatches on SOAPAction must not be steered to an
    # operation other than the one in the (checked, possibly signed) Body.
    operation = _soap_action_operation(value)
    if operation is None or envelope.header is None:
        return
    body_name = etree.QName(envelope.body_child).localname
    if operation not in (body_name, envelope.header.service.service_code):
        raise ProtocolError(
            f"SOAPAction names operation {operation!r}, the Body holds {body_name!r}",
            code="InvalidSoapAction",
        )


def parse_request(
    incoming: IncomingRequest, limits: XmlLimits, max_attachments: int = 32
) -> ParsedRequest:
    """Stage 1: from HTTP request to a checked X-Road envelope."""
    if incoming.method != "POST":
        raise ProtocolError(
            f"HTTP method {incoming.method} is not allowed; use POST", code="InvalidHttpMethod"
        )
    _soap_action_operation(incoming.soap_action)  # well-formed before anything else
    payload = split_soap_payload(
        incoming.content_type, incoming.body, max_attachments=max_attachments
    )
    root = parse_untrusted_xml(payload.soap, limits, what="the SOAP message")
    envelope = parse_envelope(root)
    if envelope.header is None:
        raise ProtocolError("a SOAP fault is not a request", code="InvalidSoap")
    _check_soap_action(incoming.soap_action, envelope)
    return ParsedRequest(payload, envelope)


# --- 2. authenticate ------------------------------------------------------------------------


def authenticate(
    env: ExchangeEnv, parsed: ParsedRequest, now: datetime, tls_client_cert: bytes | None = None
) -> AuthenticatedClient:
    """Stage 2: the client's auth mode decides what proof is needed."""
    header = parsed.envelope.header
    assert header is not None
    entry = env.registry.find_client(header.client)
    if entry is None:
        raise AuthError(f"client {header.client} is not registered", code="UnknownMember")
    if entry.auth == "none":
        if not env.settings.allow_unauthenticated_clients:
            raise AuthError(
                "unauthenticated clients are not allowed by this gateway", code="MissingSignature"
            )
        return AuthenticatedClient(entry, "none", None)
    if entry.auth in ("mtls", "signature+mtls"):
        check_tls_client(entry, tls_client_cert)
        if entry.auth == "mtls":
            return AuthenticatedClient(entry, "mtls", None)
    verified = verify_soap_signature(
        parsed.envelope.root,
        policy=entry.signature_policy,
        trust=env.trust,
        now=now,
        max_clock_skew=env.max_clock_skew,
    )
    if verified.signed_body is not parsed.envelope.body:
        raise AuthError("the signed Body is not the message's Body", code="InvalidSignatureValue")
    signer = verified.signer
    pinned = signer.thumbprint_sha256 in entry.signing_thumbprints
    if not pinned and signer.member_id != header.client.member:
        raise AuthError(
            f"the signing certificate does not belong to client {header.client}",
            code="IncorrectCertificate",
        )
    return AuthenticatedClient(entry, entry.auth, verified)


# --- 3. resolve and 4. authorise ------------------------------------------------------------


def resolve_and_authorise(env: ExchangeEnv, parsed: ParsedRequest) -> ServiceEntry:
    """Stages 3 and 4: the service must exist, be enabled, be SOAP, and be open to the client."""
    header = parsed.envelope.header
    assert header is not None
    service = env.registry.find_service(header.service)
    if service is None:
        raise AccessError(f"service {header.service} is not registered", code="UnknownService")
    if service.disabled:
        notice = f": {service.disabled_notice}" if service.disabled_notice else ""
        raise AccessError(f"service {header.service} is disabled{notice}", code="ServiceDisabled")
    if service.type != "soap":
        raise AccessError(
            f"service {header.service} is a {service.type} service, not SOAP", code="ServiceType"
        )
    if not env.registry.is_allowed(header.client, header.service):
        raise AccessError(
            f"client {header.client} may not call service {header.service}", code="AccessDenied"
        )
    return service


# --- 6. forward and 7. check the reply ------------------------------------------------------


def _forward_headers(incoming: IncomingRequest) -> dict[str, str]:
    # SPEC 3.1: only Content-Type and SOAPAction pass to the provider.
    headers = {"Content-Type": incoming.content_type or "text/xml; charset=utf-8"}
    if incoming.soap_action is not None:
        headers["SOAPAction"] = incoming.soap_action
    return headers


def _parse_reply(env: ExchangeEnv, reply: ProviderReply) -> tuple[SoapPayload, SoapEnvelope]:
    ctype = parse_content_type(reply.content_type)
    if ctype is None or ctype.media_type not in ("text/xml", "multipart/related"):
        raise ProtocolError(
            f"the provider answered with Content-Type {reply.content_type!r}",
            code="ServiceFailed.InvalidContentType",
        )
    try:
        payload = split_soap_payload(reply.content_type, reply.body)
        root = parse_untrusted_xml(payload.soap, env.limits, what="the provider's answer")
    except ProtocolError as exc:
        # An empty or unterminated multipart answer is a broken message, not missing SOAP.
        code = "InvalidMessage" if exc.code == "MissingSoap" else exc.code
        raise ProtocolError(f"the provider's answer: {exc}", code=f"ServiceFailed.{code}") from exc
    return payload, parse_envelope(root, response=True)


def check_reply(
    env: ExchangeEnv, parsed: ParsedRequest, reply: ProviderReply, now: datetime
) -> tuple[bytes, str, bool]:
    """Stage 7: the provider's answer, checked, given its requestHash and signed.

    Returns the body and Content-Type to send and whether it is the provider's own fault,
    which passes through unchanged (SOAP 1.1 providers send faults with HTTP 500).
    """
    request = parsed.envelope.header
    assert request is not None
    content_type = reply.content_type or "text/xml"
    if not 200 <= reply.status < 300:
        try:
            _, envelope = _parse_reply(env, reply)
        except ProtocolError as exc:
            raise ProtocolError(
                f"the provider answered with HTTP status {reply.status}",
                code="ServiceFailed.HttpError",
            ) from exc
        if not envelope.is_fault:
            raise ProtocolError(
                f"the provider answered with HTTP status {reply.status}",
                code="ServiceFailed.HttpError",
            )
        return reply.body, content_type, True
    payload, envelope = _parse_reply(env, reply)
    if envelope.is_fault:
        return reply.body, content_type, True
    answer = envelope.header
    assert answer is not None
    if answer.echo_fields() != request.echo_fields():
        raise ProtocolError(
            "the provider's answer does not echo the request's X-Road headers",
            code="ServiceFailed.InconsistentHeaders",
        )
    header_el = envelope.header_elements["client"].getparent()
    assert header_el is not None
    set_request_hash(header_el, request_hash(parsed.payload.soap))
    signed = sign_soap(
        envelope.root,
        key=env.signer.key,
        certificate=env.signer.certificate,
        profile="strict",
        now=now,
    )
    soap_bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    if not payload.multipart:
        return soap_bytes, "text/xml; charset=UTF-8", False
    return _reframe(content_type, payload, soap_bytes), content_type, False


def _reframe(content_type: str, payload: SoapPayload, soap_bytes: bytes) -> bytes:
    """Rebuild a multipart answer around the signed SOAP part; attachments unchanged."""
    ctype = parse_content_type(content_type)
    assert ctype is not None
    boundary = ctype.params["boundary"].encode("ascii")
    out = [b"--" + boundary + b"\r\n"]
    out.extend(
        f"{name}: {value}\r\n".encode("latin-1")
        for name, value in payload.soap_part_headers.items()
        if name != "content-length"
    )
    out.append(b"\r\n")
    out.append(soap_bytes)
    for part in payload.attachments:
        out.append(b"\r\n--" + boundary + b"\r\n")
        out.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in part.headers.items())
        out.append(b"\r\n")
        out.append(part.content)
    out.append(b"\r\n--" + boundary + b"--\r\n")
    return b"".join(out)


# --- 5. and 8. audit ------------------------------------------------------------------------


@dataclass(slots=True)
class _Exchange:
    """What is known about an exchange so far; feeds both audit records."""

    request_id: str
    incoming: IncomingRequest
    body_complete: bool = True  # False when the request outgrew its limit as it was read
    parsed: ParsedRequest | None = None
    client: AuthenticatedClient | None = None
    service: ServiceEntry | None = None

    async def draft(
        self,
        env: ExchangeEnv,
        direction: Direction,
        *,
        body: bytes,
        fault: Fault | None,
        status: int | None,
        duration_ms: float | None,
    ) -> AuditRecordDraft:
        """The record of one direction; the body is kept as the service's policy says
        (sealed under ``encrypted``), an incomplete request body (refused as too large) by
        its size only; raises `AuditError` when it cannot be."""
        header = self.parsed.envelope.header if self.parsed is not None else None
        verified = self.client.verified if self.client is not None else None
        policy = self.service.audit_body if self.service is not None else "digest"
        if direction == "request" and not self.body_complete:
            body_fields = env.bodies.incomplete(len(body))  # no digest of a partial body
        else:
            body_fields = await env.bodies.fields_of(body, policy, self.request_id, direction)
        return AuditRecordDraft(
            time=datetime.now(tz=self.incoming.received_at.tzinfo),
            direction=direction,
            request_id=self.request_id,
            message_id=header.id if header else None,
            protocol="soap",
            dialect="xroad",
            client=str(header.client) if header else None,
            service=str(header.service) if header else None,
            user_id=header.user_id if header else None,
            issue=header.issue if header else None,
            represented_party=header.represented_party if header else None,
            http_status=status,
            fault_code=None if fault is None else fault.full_code(),
            outcome="ok" if fault is None else "fault",
            **body_fields,
            signature_value_digest=verified.signature_value_digest if verified else None,
            signer_thumbprint=verified.signer.thumbprint_sha256 if verified else None,
            auth_mode=self.client.auth_mode if self.client else None,
            peer=self.incoming.peer,
            duration_ms=duration_ms,
        )


# --- the exchange ---------------------------------------------------------------------------


# Above this size, signature work moves to a worker thread so the event loop stays free.
_THREAD_THRESHOLD = 256 * 1024


async def _cpu(size: int, fn: Callable[..., _T], *args: Any) -> _T:
    if size > _THREAD_THRESHOLD:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


class _Laps:
    """Per-stage latency for the metrics: call `lap` after each stage."""

    def __init__(self, env: ExchangeEnv) -> None:
        self._histogram = env.metrics.stage_seconds
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._histogram.labels(stage=stage).observe(now - self._last)
        self._last = now


async def _audit(env: ExchangeEnv, drafts: list[AuditRecordDraft]) -> None:
    started = time.perf_counter()
    await env.audit.append(drafts)
    env.metrics.audit_commit_seconds.observe(time.perf_counter() - started)


def _count(env: ExchangeEnv, exchange: _Exchange, outcome: str, started: float) -> None:
    env.metrics.count_exchange(
        exchange.client.entry.id if exchange.client else None,
        exchange.service.id if exchange.service else None,
        "soap",
        outcome,
        time.perf_counter() - started,
    )


async def run_soap_exchange(
    env: ExchangeEnv, incoming: IncomingRequest, *, too_large: ProtocolError | None = None
) -> OutgoingResponse:
    """Run one SOAP exchange through stages 1-9 and return what the client gets.

    ``too_large`` is the error met while the request body was read (``incoming.body`` then
    holds what was read before the limit): the exchange is refused and audited at stage 1.
    """
    started = time.perf_counter()
    exchange = _Exchange(
        request_id=str(uuid.uuid4()), incoming=incoming, body_complete=too_large is None
    )
    bound = log.bind(request_id=exchange.request_id, peer=incoming.peer)
    now = incoming.received_at
    size = len(incoming.body)
    laps = _Laps(env)
    request_logged = False
    try:
        if too_large is not None:
            raise too_large  # noqa: TRY301 - refused here so that the refusal is audited
        exchange.parsed = await _cpu(  # 1
            size, parse_request, incoming, env.limits, env.settings.limits.max_attachments
        )
        env.freshness.check(now)  # refused, and audited, while the registry is outdated
        laps.lap("parse")
        exchange.client = await _cpu(  # 2
            size, authenticate, env, exchange.parsed, now, incoming.tls_client_cert
        )
        verified = exchange.client.verified
        if verified is not None:  # 2b: not revoked (OCSP/CRL per anchor)
            anchors = env.registry.trust_anchor_entries
            await env.revocation.check_signer(verified.signer, anchors, now)
        await admit(  # 2c: rate limit, replay
            env,
            exchange.client.entry,
            exchange.parsed.envelope.header.id if exchange.parsed.envelope.header else "",
            signed_created=verified.timestamp_created if verified else None,
            signed=verified is not None,
            now=now,
            signed_digest=verified.signed_info_digest if verified else None,
        )
        laps.lap("authenticate")
        header = exchange.parsed.envelope.header
        assert header is not None
        # Metaservices (listMethods, allowedMethods, getWsdl) are answered by the gateway
        # itself; allowedMethods filters its own answer by the client's rights.
        meta = is_metaservice(header.service.service_code)
        if not meta:
            exchange.service = resolve_and_authorise(env, exchange.parsed)  # 3, 4
        laps.lap("authorise")
        request_draft = await exchange.draft(
            env, "request", body=incoming.body, fault=None, status=None, duration_ms=None
        )
        await _audit(env, [request_draft])  # 5
        request_logged = True
        laps.lap("audit_in")
        if exchange.service is None:  # 6: a metaservice, answered here
            answer = await asyncio.to_thread(
                answer_soap_metaservice,
                env.registry,
                exchange.parsed.envelope,
                exchange.client.entry.id,
                read_document=Path.read_bytes,
                limits=env.limits,
            )
            reply = ProviderReply(answer.status, answer.content_type, answer.body)
        else:
            service = exchange.service
            ssl_context = await env.provider_tls.context(service)  # ours to fail, not theirs
            with env.breakers.for_service(service).guard(str(service.id)):  # fail fast if down
                reply = await forward_request(  # 6
                    env.session,
                    service.url,
                    body=incoming.body,
                    headers=_forward_headers(incoming),
                    connect_timeout=service.connect_timeout,
                    total_timeout=service.total_timeout,
                    max_response_bytes=env.settings.limits.max_response_bytes,
                    ssl_context=ssl_context,
                )
        laps.lap("forward")
        body, content_type, _ = await _cpu(  # 7
            len(reply.body), check_reply, env, exchange.parsed, reply, now
        )
        laps.lap("check_reply")
        duration = (time.perf_counter() - started) * 1000
        response_draft = await exchange.draft(
            env, "response", body=body, fault=None, status=200, duration_ms=duration
        )
        await _audit(env, [response_draft])  # 8
        laps.lap("audit_out")
        bound.info("exchange", outcome="ok", duration_ms=round(duration, 2))
        _count(env, exchange, "ok", started)
        return OutgoingResponse(200, content_type, body)  # 9
    except Exception as exc:
        return await _refuse(env, exchange, exc, request_logged, started, bound)


async def _refuse(
    env: ExchangeEnv,
    exchange: _Exchange,
    exc: Exception,
    request_logged: bool,
    started: float,
    bound: structlog.typing.FilteringBoundLogger,
) -> OutgoingResponse:
    fault = fault_for(exc)
    if fault.code == "InternalError":
        bound.exception("exchange failed with an internal error")
    else:
        bound.info("exchange refused", fault=fault.full_code(), reason=str(exc))
    style = env.settings.fault_code_style
    body = render_fault(fault, exchange.request_id, style)
    _count(env, exchange, fault.full_code(), started)
    if not isinstance(exc, AuditError):
        duration = (time.perf_counter() - started) * 1000
        try:
            drafts = (
                []
                if request_logged
                else [
                    await exchange.draft(
                        env,
                        "request",
                        body=exchange.incoming.body,
                        fault=fault,
                        status=None,
                        duration_ms=None,
                    )
                ]
            )
            drafts.append(
                await exchange.draft(
                    env, "response", body=body, fault=fault, status=200, duration_ms=duration
                )
            )
            await _audit(env, drafts)
        except AuditError as audit_exc:
            bound.error("audit log write failed", reason=str(audit_exc))
            fault = fault_for(audit_exc)
            body = render_fault(fault, exchange.request_id, style)
    return OutgoingResponse(200, "text/xml; charset=UTF-8", body)
