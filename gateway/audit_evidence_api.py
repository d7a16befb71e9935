"""``GET /audit/v1/evidence/{request id}`` on the admin port (SPEC 8): an exchange's evidence.

The answer is the zip of `gateway.audit.evidence` (``application/zip``). Auditors
authenticate by client certificate or bearer token (`authenticate_admin`) and see only the
exchanges of members in their scope: another member's exchange answers 404, as an unknown
one does. Encrypted bodies are decrypted for the bundle when body keys are configured (an
auditor with access to the exchange may read its bodies). An exchange not yet covered by a
checkpoint answers 409 with ``Retry-After``; one that retention moved to an archive is
proved from the archive, and one a retention cut split answers 410 naming where each part
is, as a proof that needs archived records does. Authentication and
errors are those of every auditor endpoint (`auditor_endpoint`, one status table): a
store failure is logged with its details and answered 503 with a plain sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from cryptography import x509

from gateway.admin_auth import AdminPrincipal
from gateway.audit import AuditStore, InvalidAuditQuery
from gateway.audit.archive_lookup import ArchiveDirectory
from gateway.audit.evidence import EvidenceError
from gateway.audit.evidence_export import EvidenceNotFound, EvidenceSigner, collect_evidence
from gateway.audit_api import auditor_endpoint, auditor_error
from gateway.state import STATE
from registry import Registry, certificate_thumbprint

__all__ = ["EVIDENCE_OPENAPI", "add_evidence_routes"]

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _pinned_signer(registry: Registry) -> Callable[[str], x509.Certificate | None]:
    """Finds a record's signer among the registry's pinned signing certificates: a set
    lookup per client (`ClientEntry.signing_thumbprints`, computed at load), and only the
    one client that pins it has its certificates hashed to pick it out."""

    def find(thumbprint: str) -> x509.Certificate | None:
        for entry in registry.clients.values():
            if thumbprint in entry.signing_thumbprints:
                for certificate in entry.signing_certificates:
                    if certificate_thumbprint(certificate) == thumbprint:
                        return certificate
        return None

    return find


async def _evidence(
    request: web.Request, principal: AdminPrincipal, store: AuditStore
) -> web.Response:
    request_id = request.match_info["request_id"]
    if not _UUID.fullmatch(request_id):
        raise InvalidAuditQuery("the request id must be a lower-case UUID")
    state = request.app[STATE]
    env = state.env
    assert env is not None  # auditor_endpoint answered 503 without it
    checkpointer = state.checkpointer  # holds the log key the gateway signs with
    if checkpointer is None:
        return auditor_error(
            503,
            "keys.log_key is not configured: the log has no checkpoints",
            EvidenceError.code,
        )
    audit = state.settings.audit
    keyring = env.bodies.keyring
    signer = EvidenceSigner(env.signer.key, env.signer.certificate, checkpointer.verifier_key)
    try:
        bundle = await collect_evidence(
            store,
            request_id,
            signer,
            members=principal.members,
            open_body=keyring.open if keyring is not None else None,
            signer_certificate=_pinned_signer(env.registry),
            archives=ArchiveDirectory(audit.archive_dir, audit.origin),
        )
    except EvidenceNotFound:
        return auditor_error(404, f"no exchange {request_id}")
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
            "400": {"description": "the request id is not a lower-case UUID"},
            "404": {"description": "unknown or out of scope"},
            "409": {"description": "not yet covered by a checkpoint (Retry-After)"},
            "410": {
                "description": "split by a retention cut (the message names where each record is)"
            },
            "503": {"description": "the audit log cannot be read now"},
        },
    }
}


def add_evidence_routes(app: web.Application, openapi: dict[str, Any] | None = None) -> None:
    """Add the evidence endpoint to the admin application (and to ``openapi``)."""
    app.router.add_get("/audit/v1/evidence/{request_id}", auditor_endpoint(_evidence))
    if openapi is not None:
        openapi["paths"].setdefault("/audit/v1/evidence/{request_id}", EVIDENCE_OPENAPI)
        schemes = openapi.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes.setdefault("clientCertificate", {"type": "mutualTLS"})
