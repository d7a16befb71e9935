"""Bodies stored under policy ``encrypted`` (SPEC 8): AES-256-GCM envelopes bound to a record.

A `BodyKeyring` holds the configured body keys (32 random bytes each, by key id): the
*current* one seals new bodies, the others stay to open old ones, so keys rotate without
losing a body. An envelope is self-describing::

    offset  size  field
    0       4     magic and version: b"OBE" 0x01
    4       1     L, the length of the key id (1..64)
    5       L     key id (ASCII: a-z 0-9 . _ -)
    5+L     36    request id of the record (lower-case UUID, ASCII)
    41+L    1     direction of the record: 0x01 request, 0x02 response
    42+L    64    SHA-512 of the plaintext (the record's body_digest, raw)
    106+L   12    GCM nonce (random per envelope)
    118+L   ...   ciphertext, then the 16-byte GCM tag

Everything before the nonce is the GCM associated data, so the binding to the record
(request id, direction, body digest) cannot be changed without the tag failing, and an
envelope copied beside another record is refused (`open` with that record's
`BodyBinding`). Random 96-bit nonces are safe for far more bodies than one key should ever
seal (NIST SP 800-38D: 2^32 per key); rotate keys long before that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.audit.errors import AuditError

if TYPE_CHECKING:
    from gateway.audit.records import AuditRecordDraft
    from gateway.settings import BodyKeySettings

__all__ = [
    "BodyBinding",
    "BodyBindingMismatch",
    "BodyCryptoError",
    "BodyKeyError",
    "BodyKeyring",
    "Envelope",
    "InvalidEnvelope",
    "OpenBody",
    "SealedBody",
    "UnknownBodyKey",
    "check_key_id",
    "load_body_key",
    "parse_envelope",
    "write_body_key",
]

KEY_SIZE: Final = 32
_MAGIC: Final = b"OBE\x01"
_NONCE: Final = 12
_TAG: Final = 16
_DIGEST: Final = 64
_UUID: Final = 36
_KEY_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # the one definition of a body key id
_UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIRECTIONS: Final[dict[str, int]] = {"request": 1, "response": 2}
# Bodies larger than this are hashed and sealed in a worker thread (bodies.py hashes too).
OFFLOAD_BYTES: Final = 256 * 1024
_MAX_GCM: Final = 2**31 - 1  # cryptography's limit on one AES-GCM message


class BodyCryptoError(AuditError):
    """Root of the body-encryption errors."""

    code: ClassVar[str] = "BodyCryptoFailed"


class BodyKeyError(BodyCryptoError):
    """A configured body key is missing, unreadable or not 32 bytes (the message names
    the setting and the file)."""

    code: ClassVar[str] = "BodyKeyInvalid"


class UnknownBodyKey(BodyCryptoError):
    """The envelope was sealed under a key id this keyring does not hold."""

    code: ClassVar[str] = "UnknownBodyKey"


class InvalidEnvelope(BodyCryptoError):
    """The envelope is malformed, or was altered (the GCM tag does not verify)."""

    code: ClassVar[str] = "InvalidBodyEnvelope"


class BodyBindingMismatch(BodyCryptoError):
    """The envelope belongs to another record (request id, direction or body digest)."""

    code: ClassVar[str] = "BodyBindingMismatch"


@dataclass(frozen=True, slots=True)
class BodyBinding:
    """The record an envelope belongs to: request id, direction and SHA-512 of the body."""

    request_id: str
    direction: Literal["request", "response"]
    digest: bytes  # raw SHA-512 of the plaintext

    def __post_init__(self) -> None:
        if not _UUID_RE.fullmatch(self.request_id.encode("ascii", "replace")):
            raise InvalidEnvelope(f"request id {self.request_id!r} is not a lower-case UUID")
        if self.direction not in _DIRECTIONS:
            raise InvalidEnvelope(f"direction {self.direction!r} is not request or response")
        if len(self.digest) != _DIGEST:
            raise InvalidEnvelope("the body digest is not a SHA-512 digest")

    @classmethod
    def of(cls, record: AuditRecordDraft) -> BodyBinding:
        """The binding of a record (or draft), from its request id, direction and digest."""
        if record.body_digest is None:
            raise InvalidEnvelope("a record without a body digest has no encrypted body")
        return cls(record.request_id, record.direction, base64.b64decode(record.body_digest))

    @classmethod
    def for_body(
        cls, body: bytes, request_id: str, direction: Literal["request", "response"]
    ) -> BodyBinding:
        """The binding of ``body`` in the record ``request_id``/``direction``."""
        return cls(request_id, direction, hashlib.sha512(body).digest())


# Opens an envelope for the record its binding names: the plaintext, whose SHA-512 is the
# binding's digest, or `AuditError` (`BodyKeyring.open` is one).
OpenBody = Callable[[bytes, BodyBinding], bytes]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: the key id, the record it is bound to, nonce and ciphertext."""

    key_id: str
    binding: BodyBinding
    nonce: bytes
    ciphertext: bytes  # with the GCM tag
    associated_data: bytes


def _header(key_id: str, binding: BodyBinding) -> bytes:
    return b"".join(
        (
            _MAGIC,
            bytes([len(key_id)]),
            key_id.encode("ascii"),
            binding.request_id.encode("ascii"),
            bytes([_DIRECTIONS[binding.direction]]),
            binding.digest,
        )
    )


def check_key_id(key_id: str) -> None:
    """Raise `BodyKeyError` unless ``key_id`` is a body key id: 1-64 of a-z 0-9 . _ -,
    starting with a letter or digit (what an envelope header can carry). The settings
    (``audit.body_keys``) and `BodyKeyring` both check with this."""
    if not _KEY_ID.fullmatch(key_id):
        raise BodyKeyError(f"body key id {key_id!r} is not 1-64 of a-z 0-9 . _ -")


def parse_envelope(envelope: bytes) -> Envelope:
    """Split an envelope into its fields; raises `InvalidEnvelope` when malformed."""
    if len(envelope) < len(_MAGIC) + 1 or envelope[:4] != _MAGIC:
        raise InvalidEnvelope("not an obmin body envelope (version 1)")
    length = envelope[4]
    at = 5 + length
    key_id = envelope[5:at].decode("ascii", "replace")
    if not _KEY_ID.fullmatch(key_id):
        raise InvalidEnvelope("the envelope's key id is malformed")
    header_end = at + _UUID + 1 + _DIGEST
    if len(envelope) < header_end + _NONCE + _TAG:
        raise InvalidEnvelope("the envelope is truncated")
    request_id = envelope[at : at + _UUID]
    direction = {1: "request", 2: "response"}.get(envelope[at + _UUID])
    if not _UUID_RE.fullmatch(request_id) or direction is None:
        raise InvalidEnvelope("the envelope's record binding is malformed")
    binding = BodyBinding(
        request_id.decode("ascii"),
        "request" if direction == "request" else "response",
        envelope[at + _UUID + 1 : header_end],
    )
    return Envelope(
        key_id=key_id,
        binding=binding,
        nonce=envelope[header_end : header_end + _NONCE],
        ciphertext=envelope[header_end + _NONCE :],
        associated_data=envelope[:header_end],
    )


@dataclass(frozen=True, slots=True)
class SealedBody:
    """An envelope and the record binding it was sealed for."""

    envelope: bytes = field(repr=False)
    binding: BodyBinding

    @property
    def body_digest(self) -> str:
        """The base64 SHA-512 of the plaintext, as the record's ``body_digest``."""
        return base64.b64encode(self.binding.digest).decode("ascii")


class BodyKeyring:
    """The body keys by id; ``current`` seals, every key opens.

    Picklable (the keys travel with it), so that ``obmin audit verify`` can open bodies in
    its worker processes.
    """

    __slots__ = ("_ciphers", "_keys", "current")

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        for key_id, key in keys.items():
            check_key_id(key_id)
            if len(key) != KEY_SIZE:
                raise BodyKeyError(f"body key {key_id!r} is {len(key)} bytes, not {KEY_SIZE}")
        if current not in keys:
            raise BodyKeyError(f"the current body key {current!r} is not among the keys")
        self.current = current
        self._keys = dict(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    def __reduce__(self) -> tuple[type[BodyKeyring], tuple[dict[str, bytes], str]]:
        return (BodyKeyring, (self._keys, self.current))

    @classmethod
    def from_settings(
        cls, settings: BodyKeySettings, setting: str = "audit.body_keys"
    ) -> BodyKeyring:
        """Load every configured key file; `BodyKeyError` names the setting and file."""
        keys = {
            key_id: load_body_key(path, f"{setting}.keys.{key_id}")
            for key_id, path in settings.keys.items()
        }
        return cls(keys, settings.current)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key held, sorted."""
        return tuple(sorted(self._ciphers))

    def seal(
        self,
        body: bytes,
        request_id: str,
        direction: Literal["request", "response"],
        *,
        digest: bytes | None = None,
    ) -> SealedBody:
        """``body`` sealed under the current key for the record ``request_id``/``direction``.

        ``digest`` is the raw SHA-512 of ``body`` when the caller already has it (the
        pipeline hashes a body as it arrives); the body is then not hashed again, else it is
        hashed once. `SealedBody.body_digest` is what the record stores. A ``digest`` that
        is not the body's makes an envelope that never opens (`open` re-hashes).
        """
        if len(body) > _MAX_GCM - _TAG:
            raise InvalidEnvelope(f"a body of {len(body)} bytes is too large to encrypt")
        if digest is None:
            binding = BodyBinding.for_body(body, request_id, direction)
        else:
            binding = BodyBinding(request_id, direction, digest)
        header = _header(self.current, binding)
        nonce = os.urandom(_NONCE)
        envelope = header + nonce + self._ciphers[self.current].encrypt(nonce, body, header)
        return SealedBody(envelope=envelope, binding=binding)

    async def seal_async(
        self,
        body: bytes,
        request_id: str,
        direction: Literal["request", "response"],
        *,
        digest: bytes | None = None,
    ) -> SealedBody:
        """`seal`, in a worker thread for large bodies (never blocks the event loop long)."""
        if len(body) > OFFLOAD_BYTES:
            return await asyncio.to_thread(
                functools.partial(self.seal, body, request_id, direction, digest=digest)
            )
        return self.seal(body, request_id, direction, digest=digest)

    def open(self, envelope: bytes, binding: BodyBinding | None = None) -> bytes:
        """The plaintext of ``envelope``; with ``binding``, only if it belongs to that record.

        Raises `UnknownBodyKey`, `BodyBindingMismatch` or `InvalidEnvelope`. The plaintext
        is always checked against the digest the envelope names (the one hash of a read),
        so with the record's binding it matches the record's ``body_digest``: a reader
        that opens against `BodyBinding.of` the record needs no digest of its own. This is
        an `OpenBody`.
        """
        parsed = parse_envelope(envelope)
        if binding is not None and parsed.binding != binding:
            raise BodyBindingMismatch(
                "the envelope belongs to another record "
                f"({parsed.binding.request_id} {parsed.binding.direction})"
            )
        cipher = self._ciphers.get(parsed.key_id)
        if cipher is None:
            raise UnknownBodyKey(f"no body key {parsed.key_id!r} is configured")
        try:
            plaintext = cipher.decrypt(parsed.nonce, parsed.ciphertext, parsed.associated_data)
        except InvalidTag as exc:
            raise InvalidEnvelope(
                f"the envelope does not decrypt under key {parsed.key_id!r}: it was altered"
            ) from exc
        if hashlib.sha512(plaintext).digest() != parsed.binding.digest:
            raise InvalidEnvelope("the plaintext does not match the envelope's digest")
        return plaintext


def load_body_key(path: Path, setting: str) -> bytes:
    """A 32-byte body key from ``path``: the raw bytes, or their base64 on one line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BodyKeyError(f"{setting}: cannot read {path}: {exc.strerror}") from exc
    if len(data) == KEY_SIZE:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except binascii.Error as exc:
        raise BodyKeyError(
            f"{setting}: {path} is neither {KEY_SIZE} raw bytes nor their base64"
        ) from exc
    if len(key) != KEY_SIZE:
        raise BodyKeyError(f"{setting}: {path} holds a {len(key)}-byte key, not {KEY_SIZE}")
    return key


def write_body_key(path: Path) -> None:
    """Write a new random body key to ``path`` (base64, mode 0600); never overwrites."""
    line = base64.b64encode(os.urandom(KEY_SIZE)) + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise BodyKeyError(f"{path} exists; a body key is never overwritten") from exc
    except OSError as exc:
        raise BodyKeyError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(line)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise BodyKeyError(f"cannot write {path}: {exc.strerror}") from exc
