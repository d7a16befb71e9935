"""Body evidence in an audit record: size, SHA-512 digest and, under policies ``plain`` and
``encrypted``, the stored body.

A body is never part of a record's canonical JSON: the leaf commits to the digest, and a
stored body sits beside the record, where it can be checked against that digest (``plain``:
the bytes; ``encrypted``: an AES-256-GCM envelope of `gateway.audit.body_crypto`).

`BodyStorage` is what the pipeline uses: it seals ``encrypted`` bodies with the configured
keyring (in a worker thread for large ones) and stores bodies only up to
``audit.max_stored_body_bytes``. A larger body is recorded honestly as what was kept: its
digest, with ``body_policy: digest``. A service asking for ``encrypted`` without body keys
configured is refused before it can be called (`services_needing_body_keys`, checked at
start and on every registry reload); should a draft still meet one, it fails with
`AuditError` (``LoggingFailed``), as a body that cannot be sealed does: fail closed, never
stored in clear, never forwarded unlogged.

An *incomplete* body — a request refused as too large while (or before) it was read, SOAP
and REST alike — is recorded by `BodyStorage.incomplete`: the size of the bytes accepted
before the refusal (0 when the Content-Length alone refused it), no digest and policy
``none``, whatever the service asks: a digest of a prefix, or of nothing, would describe
bytes that are not the message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypedDict

from gateway.audit.body_crypto import OFFLOAD_BYTES, BodyCryptoError, BodyKeyring
from gateway.audit.errors import AuditError
from registry.models import AuditBody

if TYPE_CHECKING:
    from gateway.audit.records import Direction
    from registry import ServiceEntry

__all__ = [
    "DEFAULT_MAX_STORED",
    "BodyFields",
    "BodyStorage",
    "body_digest",
    "services_needing_body_keys",
]

DEFAULT_MAX_STORED: Final = 1024 * 1024


def body_digest(data: bytes) -> str:
    """Base64 SHA-512 of a body's bytes, as recorded in ``body_digest``."""
    return base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


class BodyFields(TypedDict):
    """The body-related fields of a draft, filled consistently by `BodyStorage`."""

    size: int
    body_digest: str | None
    body: bytes | None
    body_policy: AuditBody


def services_needing_body_keys(services: Iterable[ServiceEntry]) -> list[str]:
    """The identifiers of the services whose audit body policy is ``encrypted``, sorted."""
    return sorted(str(entry.id) for entry in services if entry.audit_body == "encrypted")


@dataclass(frozen=True, slots=True)
class BodyStorage:
    """How the pipeline keeps bodies: the keyring of ``encrypted`` (None when no
    ``audit.body_keys`` are configured) and the largest body stored."""

    keyring: BodyKeyring | None = None
    max_stored_bytes: int = DEFAULT_MAX_STORED

    async def fields(
        self,
        policy: AuditBody,
        request_id: str,
        direction: Direction,
        *,
        size: int,
        sha512: bytes,
        load: Callable[[], Awaitable[bytes]] | None,
    ) -> BodyFields:
        """The body fields of a record under ``policy``: ``none`` keeps the size only (a
        digest of a short body, a personal code, could be guessed by brute force);
        ``digest`` the SHA-512 too; ``plain`` also the body; ``encrypted`` also its sealed
        envelope. ``sha512`` is the raw digest of the ``size`` bytes,
        ``load`` reads them (called only when they are stored); None means the body is
        incomplete (refused as too large while it was read): it is then recorded as
        `incomplete` says, and ``sha512`` is not used. What ``load`` returns must be the
        bytes ``sha512`` covers: the digest is not computed again here (a spooled body
        checks what it reads back from disk, `SpooledBody.read_all_blocking`). Raises
        `AuditError` (whose code is ``LoggingFailed``, whatever went wrong)."""
        if load is None:
            return self.incomplete(size)
        digest = base64.b64encode(sha512).decode("ascii")
        if policy == "none":
            return BodyFields(size=size, body_digest=None, body=None, body_policy="none")
        if policy == "encrypted" and self.keyring is None:
            raise AuditError(
                "a service has body policy encrypted, but audit.body_keys is not configured"
            )
        if policy == "digest" or size > self.max_stored_bytes:
            return BodyFields(size=size, body_digest=digest, body=None, body_policy="digest")
        data = await load()
        if len(data) != size:
            raise AuditError(f"the body read back is {len(data)} bytes, not {size}")
        if policy == "plain":
            return BodyFields(size=size, body_digest=digest, body=data, body_policy="plain")
        assert self.keyring is not None  # checked above
        try:
            sealed = await self.keyring.seal_async(data, request_id, direction, digest=sha512)
        except BodyCryptoError as exc:
            raise AuditError(f"the body cannot be sealed for the audit log: {exc}") from exc
        return BodyFields(
            size=size, body_digest=digest, body=sealed.envelope, body_policy="encrypted"
        )

    @staticmethod
    def incomplete(size: int) -> BodyFields:
        """The body fields of an incomplete body (see the module docstring): ``size``
        bytes were accepted before it was refused; no digest, policy ``none``."""
        return BodyFields(size=size, body_digest=None, body=None, body_policy="none")

    async def fields_of(
        self, body: bytes, policy: AuditBody, request_id: str, direction: Direction
    ) -> BodyFields:
        """`fields` of a body held in memory (SOAP messages, error answers)."""
        if len(body) > OFFLOAD_BYTES:
            sha512 = await asyncio.to_thread(lambda: hashlib.sha512(body).digest())
        else:
            sha512 = hashlib.sha512(body).digest()

        async def load() -> bytes:
            return body

        return await self.fields(
            policy, request_id, direction, size=len(body), sha512=sha512, load=load
        )
