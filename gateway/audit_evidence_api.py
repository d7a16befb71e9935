"""``GET /audit/v1/evidence/{request id}`` on the admin port (SPEC 8): an exchange's evidence.

The answer is the zip of `gateway.audit.evidence` (``application/zip``). Auditors
authenticate by client certificate or bearer token (`authenticate_admin`) and see only the
exchanges of members in their scope: another member's exchange answers 404, as an unknown
one does. Encrypted bodies are decrypted for the bundle when body keys are configured (an
auditor with access to the exchange may read its bodies). An exchange not yet covered by a
checkpoint answers 409 with ``Retry-After``; one that retention moved to an archive answers
410 naming the archive, as a proof that needs archived records does.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Final

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.admin_auth import authenticate_admin, json_response, principal_scope
from gateway.audit import AuditError, RecordsArchived
from gateway.audit.archive_lookup import ArchiveDirectory
from gateway.audit.evidence_export import (
    EvidenceNotFound,
    EvidenceNotReady,
    EvidenceSigner,
    collect_evidence,
)
from gateway.state import STATE, GatewayState

__all__ = ["EVIDENCE_OPENAPI", "add_evidence_routes"]

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _known_certificates(state: GatewayState) -> dict[str, x509.Certificate]:
    env = state.env
    assert env is not None
    found = {}
    for entry in env.registry.all_clients():
        for certificate in entry.signing_certificates:
            der = certificate.public_bytes(Encoding.DER)
            found[hashlib.sha256(der).hexdigest()] = certificate
    return found


def _problem(status: int, code: str, message: str) -> web.Response:
    return json_response({"type": code, "message": message}, status=status)


async def _evidence(request: web.Request) -> web.StreamResponse:
    principal = authenticate_admin(request, "auditor")
    if isinstance(principal, web.Response):
        return principal
    request_id = request.match_info["request_id"]
    if not _UUID.fullmatch(request_id):
        return _problem(400, "InvalidQuery", "the request id must be a lower-case UUID")
    state = request.app[STATE]
    env = state.env
    if env is None:
        raise web.HTTPServiceUnavailable()
    audit = state.settings.audit
    keyring = env.bodies.keyring
    checkpointer = state.checkpointer  # holds the log key the gateway signs with
    if checkpointer is None:
        return _problem(
            503, "EvidenceUnavailable", "keys.log_key is not configured: the log has no checkpoints"
        )
    try:
        signer = EvidenceSigner(env.signer.key, env.signer.certificate, checkpointer.verifier_key)
        bundle = await collect_evidence(
            env.audit,
            request_id,
            signer,
            visible=principal_scope(principal),
            open_body=keyring.open if keyring is not None else None,
            signer_certificates=_known_certificates(state),
            archives=ArchiveDirectory(audit.archive_dir, audit.origin),
        )
    except EvidenceNotFound:
        return _problem(404, "NotFound", f"no exchange {request_id}")
    except EvidenceNotReady as exc:
        response = _problem(409, exc.code, str(exc))
        interval = state.settings.audit.checkpoint_interval_seconds
        response.headers["Retry-After"] = str(max(1, math.ceil(interval)))
        return response
    except RecordsArchived as exc:
        return _problem(410, exc.code, str(exc))
    except AuditError as exc:
        return _problem(503, exc.code, str(exc))
    return web.Response(
        body=bundle,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="evidence-{request_id}.zip"'},
    )


EVIDENCE_OPENAPI: Final[dict[str, Any]] = {
    "get": {
        "summary": "The evidence bundle (zip) of one exchange, verifiable offline",
        "security": [{"bearer": []}, {"clientCertificate": []}],
        "parameters": [
            {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": {"description": "application/zip: see docs/auditor-guide.md"},
            "404": {"description": "unknown or out of scope"},
            "409": {"description": "not yet covered by a checkpoint (Retry-After)"},
            "410": {"description": "archived by retention (the archive is named)"},
        },
    }
}


def add_evidence_routes(app: web.Application, openapi: dict[str, Any] | None = None) -> None:
    """Add the evidence endpoint to the admin application (and to ``openapi``)."""
    app.router.add_get("/audit/v1/evidence/{request_id}", _evidence)
    if openapi is not None:
        openapi["paths"].setdefault("/audit/v1/evidence/{request_id}", EVIDENCE_OPENAPI)
        schemes = openapi.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes.setdefault("clientCertificate", {"type": "mutualTLS"})
