"""The admin port: health, readiness, metrics, the gateway certificate, registry reload.

Operations that change anything (``POST /admin/v1/registry/reload``) need a bearer token
with the ``admin`` role; tokens are configured only as SHA-256 digests (`AdminToken`).
"""

from __future__ import annotations

import hashlib
import hmac

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.reload import reload_registry
from gateway.settings import AdminToken
from gateway.state import STATE, GatewayState

__all__ = ["authenticate_token", "create_admin_app"]


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"type": code, "message": message}, status=status)


def authenticate_token(request: web.Request, role: str) -> AdminToken | web.Response:
    """The admin token presented with ``request`` if it has ``role``, else the refusal."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "Unauthorized", "a bearer token is required")
    digest = hashlib.sha256(token.strip().encode("utf-8")).hexdigest()
    found = None
    for candidate in request.app[STATE].settings.admin_tokens:
        if hmac.compare_digest(candidate.sha256, digest):
            found = candidate
    if found is None:
        return _error(401, "Unauthorized", "the bearer token is not valid")
    if role not in found.roles:
        return _error(403, "Forbidden", f"the token has no {role} role")
    return found


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    env = state.env
    if env is None:
        return _json({"ready": False, "reason": "not started"}, status=503)
    writable = await env.audit.check_writable()
    reload = state.last_reload
    details = {
        "registry": {
            "loaded": True,
            "directory": str(env.registry.loaded_from),
            "digest": env.registry.digest,
            "services": env.registry.counts.services,
            "last_reload": None
            if reload is None
            else {
                "ok": reload.ok,
                "trigger": reload.trigger,
                "at": reload.at.isoformat(),
                "error": reload.error,
            },
        },
        "audit_store": {"writable": writable},
        "keys": {
            "gateway_certificate_not_after": env.signer.certificate.not_valid_after_utc.isoformat()
        },
    }
    return _json({"ready": writable, "details": details}, status=200 if writable else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def _gateway_certificate(request: web.Request) -> web.Response:
    env = request.app[STATE].env
    if env is None:
        raise web.HTTPServiceUnavailable()
    pem = env.signer.certificate.public_bytes(Encoding.PEM)
    return web.Response(body=pem, content_type="application/x-pem-file")


async def _reload(request: web.Request) -> web.Response:
    token = authenticate_token(request, "admin")
    if isinstance(token, web.Response):
        return token
    outcome = await reload_registry(request.app[STATE], "admin")
    body = {"ok": outcome.ok, "digest": outcome.digest, "error": outcome.error}
    return _json(body, status=200 if outcome.ok else 422)


def create_admin_app(state: GatewayState) -> web.Application:
    """The admin port application, sharing ``state`` with the client port."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/gateway/certificate", _gateway_certificate)
    app.router.add_post("/admin/v1/registry/reload", _reload)
    return app
