"""The aiohttp applications: the client port and the admin port, and their shared resources.

Handlers are thin glue: they turn an HTTP request into an `IncomingRequest`, run the
exchange pipeline and write its `OutgoingResponse`. Long-lived resources (registry snapshot,
trust store, audit store, HTTP client session, gateway key) are created in one place,
`_resources`, and closed there on shutdown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from gateway.audit import (
    AuditStore,
    BodyKeyring,
    BodyStorage,
    Checkpointer,
    TimestampOutcome,
    TsaClient,
    open_audit_store,
)
from gateway.audit.retention import run_retention
from gateway.context import ExchangeEnv, GatewaySigner
from gateway.metrics import GatewayMetrics
from gateway.outdated import RegistryFreshness
from gateway.provider_tls import ProviderTls
from gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from gateway.reload import check_body_policies, watch_registry
from gateway.rest_exchange import (
    GlobalMeta,
    RestIncoming,
    run_global_metaservice,
    run_rest_exchange,
)
from gateway.settings import RevocationSettings, Settings
from gateway.soap.mime import ProtocolError
from gateway.soap.xml import XmlLimits
from gateway.soap_exchange import IncomingRequest, run_soap_exchange
from gateway.spool import SpooledBody, TooLarge
from gateway.state import STATE, GatewayState
from gateway.tls import peer_certificate
from registry import load_registry
from security import TrustStore, load_certificate, load_private_key
from security.replay import MemoryReplayCache, RedisReplayCache, ReplayCache
from security.revocation import RevocationChecker, RevocationConfig

__all__ = ["client_server_options", "create_client_app", "revocation_config"]

log = structlog.get_logger("obmin.server")


def _build_env(
    settings: Settings,
    audit: AuditStore,
    session: aiohttp.ClientSession,
    metrics: GatewayMetrics,
    revocation: RevocationChecker,
    replay: ReplayCache,
    rate_limiter: RateLimiter,
    passphrase: bytes | None,
    bodies: BodyStorage,
) -> ExchangeEnv:
    registry = load_registry(settings.registry_dir)
    check_body_policies(registry, bodies)
    signer = GatewaySigner(
        key=load_private_key(settings.keys.signing_key, passphrase),
        certificate=load_certificate(settings.keys.signing_certificate),
    )
    return ExchangeEnv(
        settings=settings,
        registry=registry,
        trust=TrustStore(registry.trust_anchors, registry.intermediates),
        audit=audit,
        session=session,
        signer=signer,
        limits=XmlLimits(
            max_bytes=settings.limits.max_request_bytes, max_depth=settings.limits.max_xml_depth
        ),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        metrics=metrics,
        revocation=revocation,
        replay=replay,
        rate_limiter=rate_limiter,
        key_passphrase=passphrase,
        bodies=bodies,
        provider_tls=ProviderTls(passphrase),
        freshness=RegistryFreshness(
            None
            if settings.registry_max_outdated_seconds is None
            else timedelta(seconds=settings.registry_max_outdated_seconds)
        ),
    )


def _body_storage(settings: Settings) -> BodyStorage:
    """The body keyring (``audit.body_keys``, when configured) and the stored-body cap."""
    keys = settings.audit.body_keys
    return BodyStorage(
        keyring=BodyKeyring.from_settings(keys) if keys is not None else None,
        max_stored_bytes=settings.audit.max_stored_body_bytes,
    )


def _timestamp_reporter(state: GatewayState) -> Callable[[TimestampOutcome], None]:
    """Counts each checkpoint timestamp attempt in the metrics (``/readyz`` reads the
    checkpointer's last outcome)."""

    def report(outcome: TimestampOutcome) -> None:
        state.metrics.count_timestamp(outcome.code)

    return report


def revocation_config(settings: RevocationSettings) -> RevocationConfig:
    """The revocation checker's configuration from the gateway's ``revocation`` settings."""
    return RevocationConfig(
        timeout=settings.timeout_seconds,
        max_age=timedelta(seconds=settings.max_age_seconds),
        clock_skew=timedelta(seconds=settings.clock_skew_seconds),
        crl_refresh=timedelta(seconds=settings.crl_refresh_seconds),
        unavailable_retry=timedelta(seconds=settings.unavailable_retry_seconds),
        cache_size=settings.cache_size,
        require_nonce=settings.require_nonce,
    )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    if settings.allow_unauthenticated_clients:
        log.warning("unauthenticated clients are allowed: use only for tests and development")
    passphrase = settings.keys.passphrase(os.environ)
    audit = await open_audit_store(settings.audit)
    checkpointer: Checkpointer | None = None
    session = aiohttp.ClientSession(auto_decompress=False)
    # aiohttp re-sends a GET, PUT, DELETE... once when the connection breaks after sending;
    # SPEC 7 allows that only where the service says so (`retry_idempotent`, done in the
    # REST forwarder). No public switch exists: tests/conformance/test_forwarding_policy.py
    # fails if this stops working.
    session._retry_connection = False
    try:
        bodies = _body_storage(settings)
        # Signed checkpoints of the audit log (SPEC 8): one signer per log, the primary worker.
        if settings.keys.log_key is not None and state.primary:
            checkpointer = Checkpointer.from_settings(
                audit,
                settings.audit,
                settings.keys.log_key,
                passphrase,
                timestamper=_timestamper(session, settings),  # RFC 3161, when configured
                on_timestamp=_timestamp_reporter(state),
            )
            await checkpointer.start()
            state.checkpointer = checkpointer
            if settings.audit.retention_max_age_days is not None:  # SPEC 8 retention
                retention = run_retention(audit, settings.audit, checkpointer.verifier_key)
                state.spawn(retention, "audit-retention")
        # One checker for the process: its OCSP/CRL caches outlive registry reloads.
        revocation = RevocationChecker(session, revocation_config(settings.revocation))
        replay, rate_limiter = _shared_state(settings)
        state.env = _build_env(
            settings,
            audit,
            session,
            state.metrics,
            revocation,
            replay,
            rate_limiter,
            passphrase,
            bodies,
        )
        _record_static_metrics(state)
        if settings.registry_watch_seconds:
            state.spawn(watch_registry(state, settings.registry_watch_seconds), "registry-watch")
        yield
    finally:
        await state.cancel_tasks()
        if state.env is not None:
            await state.env.replay.aclose()
            await state.env.rate_limiter.aclose()
        state.env = None
        state.checkpointer = None
        if checkpointer is not None:
            await checkpointer.stop()  # a final checkpoint covering every record
        await session.close()
        await audit.close()


def client_server_options(settings: Settings) -> dict[str, Any]:
    """HTTP parser limits of the client port: header count and header line size."""
    limits = settings.limits
    return {
        "max_headers": limits.max_header_count,
        "max_field_size": limits.max_header_bytes,
        "max_line_size": limits.max_header_bytes,
    }


def _shared_state(settings: Settings) -> tuple[ReplayCache, RateLimiter]:
    """Replay cache and rate limiter: in this process, or in Redis for several processes."""
    shared = settings.shared_state
    if shared.backend == "redis":
        return (
            RedisReplayCache(shared.redis_url, key_prefix=f"{shared.key_prefix}replay:"),
            RedisRateLimiter(
                shared.redis_url,
                key_prefix=f"{shared.key_prefix}rate:",
                fail_open=shared.rate_limit_fail_open,
            ),
        )
    return MemoryReplayCache(), MemoryRateLimiter()


def _record_static_metrics(state: GatewayState) -> None:
    env = state.env
    assert env is not None
    state.metrics.registry_services.set(env.registry.counts.services)
    left = env.signer.certificate.not_valid_after_utc - datetime.now(UTC)
    state.metrics.certificate_days_left.labels(certificate="gateway-signing").set(
        left.total_seconds() / 86400
    )


async def _read_body(request: web.Request, limit: int) -> tuple[bytes, ProtocolError | None]:
    """The request body, or what was read of it and the error when it is over ``limit``."""
    too_large = ProtocolError(f"the request is larger than {limit} bytes", code="MessageTooLarge")
    if request.content_length is not None and request.content_length > limit:
        return b"", too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), too_large
        chunks.append(chunk)
    return b"".join(chunks), None


def _raw_headers(request: web.Request) -> tuple[tuple[str, str], ...]:
    """Header lines as received: names in the client's spelling (``request.headers`` gives
    well-known names aiohttp's own case), values without surrounding whitespace. The X-Road
    request hash is computed over them (`gateway.rest.protocol.rest_request_hash`)."""
    return tuple(
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in request.raw_headers
    )


async def _handle_soap(request: web.Request) -> web.Response:
    state = request.app[STATE]
    env = state.env
    if env is None:  # shutting down
        raise web.HTTPServiceUnavailable()
    # An oversize body is refused by the pipeline, so that the refusal carries a request id
    # and is audited like any other.
    body, too_large = await _read_body(request, env.settings.limits.max_request_bytes)
    incoming = IncomingRequest(
        method=request.method,
        content_type=request.headers.get("Content-Type"),
        soap_action=request.headers.get("SOAPAction"),
        body=body,
        peer=request.remote or "",
        received_at=datetime.now(UTC),
        tls_client_cert=peer_certificate(request),
    )
    outgoing = await run_soap_exchange(env, incoming, too_large=too_large)
    response = web.Response(status=outgoing.status, body=outgoing.body)
    response.headers["Content-Type"] = outgoing.content_type
    return response


async def _handle_list_clients(request: web.Request) -> web.StreamResponse:
    return await _handle_rest(request, global_meta="listClients")


async def _handle_wsdl(request: web.Request) -> web.StreamResponse:
    return await _handle_rest(request, global_meta="wsdl")


async def _handle_rest(
    request: web.Request, global_meta: GlobalMeta | None = None
) -> web.StreamResponse:
    state = request.app[STATE]
    env = state.env
    if env is None:
        raise web.HTTPServiceUnavailable()
    body = SpooledBody(limit=env.settings.limits.max_request_bytes)
    try:
        try:
            await body.fill(request.content.iter_chunked(64 * 1024))
            too_large: TooLarge | None = None
        except TooLarge as exc:
            too_large = exc
        incoming = RestIncoming(
            method=request.method,
            target=request.raw_path,
            scheme=request.scheme,
            authority=request.host,
            headers=_raw_headers(request),
            body=body,
            peer=request.remote or "",
            received_at=datetime.now(UTC),
            tls_client_cert=peer_certificate(request),
        )
        if global_meta is not None:
            outgoing = await run_global_metaservice(env, incoming, global_meta)
        else:
            outgoing = await run_rest_exchange(env, incoming, too_large=too_large)
        response = web.StreamResponse(status=outgoing.status)
        for name, value in outgoing.headers:
            response.headers.add(name, value)
        if isinstance(outgoing.body, bytes):
            response.content_length = len(outgoing.body)
            await response.prepare(request)
            await response.write(outgoing.body)
        else:
            try:  # the spooled answer is released whatever happens, a client gone included
                length = outgoing.content_length
                response.content_length = outgoing.body.size if length is None else length
                await response.prepare(request)
                async for chunk in outgoing.body.chunks():
                    await response.write(chunk)
            finally:
                outgoing.body.close()
        await response.write_eof()
        return response
    finally:
        body.close()


def _timestamper(session: aiohttp.ClientSession, settings: Settings) -> TsaClient | None:
    """The TSA client of ``audit.tsa``, judging genTime by the gateway's clock skew."""
    if settings.audit.tsa is None:
        return None
    skew = timedelta(seconds=settings.max_clock_skew_seconds)
    return TsaClient.from_settings(session, settings.audit.tsa, max_clock_skew=skew)


def create_client_app(settings: Settings, state: GatewayState | None = None) -> web.Application:
    """The client port: X-Road SOAP on ``/``. Owns the gateway's resources."""
    app = web.Application(client_max_size=settings.limits.max_request_bytes)
    app[STATE] = state or GatewayState(settings)
    app.cleanup_ctx.append(_resources)
    app.router.add_route("*", "/", _handle_soap)
    app.router.add_route("*", "/r1/{tail:.*}", _handle_rest)
    app.router.add_route("*", "/restapi{tail:.*}", _handle_rest)
    app.router.add_get("/listClients", _handle_list_clients)
    app.router.add_get("/wsdl", _handle_wsdl)
    return app
