"""The admin port: health, readiness, metrics, the gateway certificate, registry reload.

Operations that change anything (``POST /admin/v1/registry/reload``) need a caller with
the ``admin`` role: a bearer token (configured only as its SHA-256 digest, `AdminToken`) or,
on the HTTPS admin port, a configured client certificate (`authenticate_admin`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import UTC, datetime

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.admin_auth import authenticate_admin, json_response
from gateway.audit_api import OPENAPI, add_audit_routes
from gateway.audit_evidence_api import add_evidence_routes
from gateway.reload import reload_registry
from gateway.state import STATE, GatewayState

__all__ = ["create_admin_app"]


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    env = state.env
    if env is None:
        return json_response({"ready": False, "reason": "not started"}, status=503)
    writable = await env.audit.check_writable()
    outdated = env.freshness.outdated(datetime.now(UTC))
    refused_since = env.freshness.refused_since
    reload = state.last_reload
    details = {
        "registry": {
            "loaded": True,
            "directory": str(env.registry.loaded_from),
            "digest": env.registry.digest,
            "services": env.registry.counts.services,
            # Since when reloads have refused the files (the registry in force is older).
            "files_refused_since": None if refused_since is None else refused_since.isoformat(),
            "outdated": outdated,
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
        "audit_timestamps": _timestamps(state),
        "keys": {
            "gateway_certificate_not_after": env.signer.certificate.not_valid_after_utc.isoformat()
        },
    }
    ready = writable and not outdated
    return json_response({"ready": ready, "details": details}, status=200 if ready else 503)


def _timestamps(state: GatewayState) -> dict[str, object] | None:
    """The TSA and the last checkpoint timestamp attempt (None when no TSA is configured).

    Informative only: a failing TSA never makes the gateway unready (the log goes on and
    the timestamp is retried, see `Checkpointer`)."""
    checkpointer = state.checkpointer
    if checkpointer is None or checkpointer.timestamper is None:
        return None
    last = checkpointer.last_timestamp
    waiting = checkpointer.unstamped
    return {
        "tsa": checkpointer.timestamper.url,
        "waiting_tree_size": None if waiting is None else waiting.size,
        "last": None
        if last is None
        else {
            "ok": last.ok,
            "outcome": last.code,
            "tree_size": last.tree_size,
            "at": last.at.isoformat(),
            "gen_time": None if last.gen_time is None else last.gen_time.isoformat(),
            "error": last.error,
        },
    }


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
    principal = authenticate_admin(request, "admin")
    if isinstance(principal, web.Response):
        return principal
    state = request.app[STATE]
    outcome = await reload_registry(state, "admin")
    if state.supervisor is not None:  # the other workers reload too (`gateway.workers`)
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.supervisor, signal.SIGUSR1)
    body = {"ok": outcome.ok, "digest": outcome.digest, "error": outcome.error}
    return json_response(body, status=200 if outcome.ok else 422)


def create_admin_app(state: GatewayState) -> web.Application:
    """The admin port application, sharing ``state`` with the client port."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/gateway/certificate", _gateway_certificate)
    app.router.add_post("/admin/v1/registry/reload", _reload)
    add_audit_routes(app)
    add_evidence_routes(app, OPENAPI)
    return app
