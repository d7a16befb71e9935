"""Body evidence in an audit record: size, SHA-512 digest and (policy ``plain``) the bytes.

A body is never part of a record's canonical JSON: the leaf commits to the digest, and a
stored body sits beside the record, where it can be checked against that digest.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TypedDict

from registry.models import AuditBody

__all__ = ["BodyFields", "body_digest", "body_fields"]


def body_digest(data: bytes) -> str:
    """Base64 SHA-512 of a body's bytes, as recorded in ``body_digest``."""
    return base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


class BodyFields(TypedDict):
    """The body-related fields of a draft, filled consistently by `body_fields`."""

    size: int
    body_digest: str | None
    body: bytes | None
    body_policy: AuditBody


def body_fields(body: bytes, policy: AuditBody) -> BodyFields:
    """Size, digest and (under policy ``plain`` only) the body, for ``AuditRecordDraft(**...)``.

    ``none`` keeps the size only: a digest of a short body (a personal code) could be
    guessed by brute force. ``digest`` keeps the SHA-512; ``encrypted`` keeps only the digest
    too until the key configuration exists — storing less than asked, never more.
    """
    return BodyFields(
        size=len(body),
        body_digest=None if policy == "none" else body_digest(body),
        body=body if policy == "plain" else None,
        body_policy=policy,
    )
