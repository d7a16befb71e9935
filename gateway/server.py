"""The aiohttp applications: the client port and the admin port, and their shared resources.

Handlers are thin glue: they turn an HTTP request into an `IncomingRequest`, run the
exchange pipeline and write its `OutgoingResponse`. Long-lived resources (registry snapshot,
trust store, audit store, HTTP client session, gateway key) are created in one place,
`_resources`, and closed there on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import structlog
from aiohttp import web

from gateway.audit import AuditStore, open_audit_store
from gateway.context import ExchangeEnv, GatewaySigner
from gateway.errors import fault_for
from gateway.settings import Settings
from gateway.soap.mime import ProtocolError
from gateway.soap.render import render_fault
from gateway.soap.xml import XmlLimits
from gateway.soap_exchange import IncomingRequest, run_soap_exchange
from registry import load_registry
from security import TrustStore, load_certificate, load_private_key

__all__ = ["GatewayState", "create_admin_app", "create_client_app"]

log = structlog.get_logger("obmin.server")


@dataclass(slots=True)
class GatewayState:
    """The gateway's current environment; `env` is replaced whole, never mutated."""

    settings: Settings
    env: ExchangeEnv | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


STATE = web.AppKey("state", GatewayState)


def _build_env(
    settings: Settings, audit: AuditStore, session: aiohttp.ClientSession
) -> ExchangeEnv:
    registry = load_registry(settings.registry_dir)
    signer = GatewaySigner(
        key=load_private_key(settings.keys.signing_key),
        certificate=load_certificate(settings.keys.signing_certificate),
    )
    return ExchangeEnv(
        settings=settings,
        registry=registry,
        trust=TrustStore(registry.trust_anchors),
        audit=audit,
        session=session,
        signer=signer,
        limits=XmlLimits(
            max_bytes=settings.limits.max_request_bytes, max_depth=settings.limits.max_xml_depth
        ),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
    )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    if settings.allow_unauthenticated_clients:
        log.warning("unauthenticated clients are allowed: use only for tests and development")
    audit = await open_audit_store(settings.audit)
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        state.env = _build_env(settings, audit, session)
        yield
    finally:
        state.env = None
        await session.close()
        await audit.close()


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ProtocolError(f"the request is larger than {limit} bytes", code="MessageTooLarge")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ProtocolError(f"the request is larger than {limit} bytes", code="MessageTooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


async def _handle_soap(request: web.Request) -> web.Response:
    state = request.app[STATE]
    env = state.env
    if env is None:  # shutting down
        raise web.HTTPServiceUnavailable()
    try:
        body = await _read_body(request, env.settings.limits.max_request_bytes)
    except ProtocolError as exc:
        fault = render_fault(fault_for(exc), "-", env.settings.fault_code_style)
        return web.Response(body=fault, content_type="text/xml", charset="utf-8")
    incoming = IncomingRequest(
        method=request.method,
        content_type=request.headers.get("Content-Type"),
        soap_action=request.headers.get("SOAPAction"),
        body=body,
        peer=request.remote or "",
        received_at=datetime.now(UTC),
    )
    outgoing = await run_soap_exchange(env, incoming)
    response = web.Response(status=outgoing.status, body=outgoing.body)
    response.headers["Content-Type"] = outgoing.content_type
    return response


def create_client_app(settings: Settings, state: GatewayState | None = None) -> web.Application:
    """The client port: X-Road SOAP on ``/``. Owns the gateway's resources."""
    app = web.Application(client_max_size=settings.limits.max_request_bytes)
    app[STATE] = state or GatewayState(settings)
    app.cleanup_ctx.append(_resources)
    app.router.add_route("*", "/", _handle_soap)
    return app


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    env = request.app[STATE].env
    if env is None:
        return _json({"ready": False, "reason": "not started"}, status=503)
    writable = await env.audit.check_writable()
    details = {
        "registry": {"loaded": True, "directory": str(env.registry.loaded_from)},
        "audit_store": {"writable": writable},
        "keys": {
            "gateway_certificate_not_after": env.signer.certificate.not_valid_after_utc.isoformat()
        },
    }
    ready = writable
    return _json({"ready": ready, "details": details}, status=200 if ready else 503)


async def _gateway_certificate(request: web.Request) -> web.Response:
    env = request.app[STATE].env
    if env is None:
        raise web.HTTPServiceUnavailable()
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = env.signer.certificate.public_bytes(Encoding.PEM)
    return web.Response(body=pem, content_type="application/x-pem-file")


def create_admin_app(state: GatewayState) -> web.Application:
    """The admin port: health, readiness and the gateway certificate."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/gateway/certificate", _gateway_certificate)
    return app
