"""Building realistic audit drafts for the audit tests."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.audit import AuditRecordDraft, body_fields
from registry.models import AuditBody

CLIENT = "SEVDEIR-TEST/GOV/12345678/WSCLIENT"
SERVICE = "SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1"
NOW = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


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
        **body_fields(body, policy),
    )
    return dataclasses.replace(draft, **changes)


def exchange(message_id: str, **changes: Any) -> list[AuditRecordDraft]:
    """The request and response drafts of one exchange."""
    request_id = str(uuid.uuid4())
    return [
        make_draft(request_id=request_id, message_id=message_id, **changes),
        make_draft(direction="response", request_id=request_id, message_id=message_id, **changes),
    ]
