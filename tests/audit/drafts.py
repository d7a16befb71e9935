"""Building realistic audit drafts for the audit tests."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.audit import AuditRecordDraft, BodyFields, body_digest
from registry.models import AuditBody

CLIENT = "SEVDEIR-TEST/GOV/12345678/WSCLIENT"
SERVICE = "SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1"
NOW = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def draft_body(body: bytes, policy: AuditBody) -> BodyFields:
    """Body fields of a test draft: the size; the digest (but under ``none``); the body
    under ``plain``. Under ``encrypted`` the digest only: a test that stores an envelope
    seals one (`BodyKeyring`) or writes its own and attaches it. The pipeline's are
    `BodyStorage`'s, which seals under ``encrypted`` or refuses."""
    return BodyFields(
        size=len(body),
        body_digest=None if policy == "none" else body_digest(body),
        body=body if policy == "plain" else None,
        body_policy=policy,
    )


def make_draft(
    *,
    direction: str = "request",
    request_id: str | None = None,
    body: bytes = b"<Envelope>person</Envelope>",
    policy: AuditBody = "digest",
    **changes: Any,
) -> AuditRecordDraft:
    """A SOAP request (or response) draft as the pipeline builds it, with ``changes``."""
    draft = AuditRecordDraft(
        time=NOW,
        direction="response" if direction == "response" else "request",
        request_id=request_id or str(uuid.uuid4()),
        protocol="soap",
        dialect="xroad",
        outcome="ok",
        peer="127.0.0.1",
        message_id="m-1",
        client=CLIENT,
        service=SERVICE,
        user_id="UA:1234567890",
        auth_mode="signature",
        signer_thumbprint="ab" * 32,
        http_status=200 if direction == "response" else None,
        duration_ms=12.5 if direction == "response" else None,
        **draft_body(body, policy),
    )
    return dataclasses.replace(draft, **changes)


def exchange(message_id: str, **changes: Any) -> list[AuditRecordDraft]:
    """The request and response drafts of one exchange."""
    request_id = str(uuid.uuid4())
    return [
        make_draft(request_id=request_id, message_id=message_id, **changes),
        make_draft(direction="response", request_id=request_id, message_id=message_id, **changes),
    ]
