"""Authentication of admin-port callers: bearer tokens (configured as SHA-256 digests) and
TLS client certificates (`gateway.admin_tls`), with the same roles and member scopes."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

import orjson
from aiohttp import web

from gateway.admin_tls import match_admin_certificate
from gateway.settings import AdminToken
from gateway.state import STATE
from gateway.tls import peer_certificate

__all__ = [
    "AdminPrincipal",
    "authenticate_admin",
    "authenticate_token",
    "json_response",
]


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


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """An authenticated admin-port caller: its name, roles, member scope and how it
    authenticated (``certificate``: the TLS client certificate; ``token``: a bearer token)."""

    name: str
    roles: tuple[str, ...]
    members: tuple[str, ...]
    method: Literal["certificate", "token"]


def authenticate_admin(request: web.Request, role: str) -> AdminPrincipal | web.Response:
    """The caller of ``request`` if it has ``role``, else the refusal (401 or 403).

    A client certificate that the handshake verified and ``admin_certificates`` names
    identifies the caller; otherwise the bearer token does. A configured certificate
    without the role is refused even if a token is also sent: one request, one identity.
    """
    der = peer_certificate(request)
    if der is not None:
        entry = match_admin_certificate(request.app[STATE].settings.admin_certificates, der)
        if entry is not None:
            if role not in entry.roles:
                return _error(403, "Forbidden", f"the client certificate has no {role} role")
            return AdminPrincipal(entry.name, entry.roles, entry.members, "certificate")
        if "Authorization" not in request.headers:
            return _error(
                401, "Unauthorized", "the client certificate is not configured for any caller"
            )
    token = authenticate_token(request, role)
    if isinstance(token, web.Response):
        return token
    return AdminPrincipal(token.name, token.roles, token.members, "token")
