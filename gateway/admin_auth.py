"""Authentication of admin-port callers: bearer tokens configured as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac

import orjson
from aiohttp import web

from gateway.settings import AdminToken
from gateway.state import STATE

__all__ = ["authenticate_token", "json_response"]


def json_response(data: object, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return json_response({"type": code, "message": message}, status=status)


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
