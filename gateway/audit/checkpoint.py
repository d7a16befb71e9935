"""Checkpoints: the log's signed tree heads, as C2SP ``tlog-checkpoint`` signed notes.

A checkpoint's body is three lines — the log's origin, the tree size in decimal, the
base64 root hash — each ending in a newline (C2SP ``tlog-checkpoint``). The body is signed
as a C2SP ``signed-note``: after a blank line, one line per signature::

    — <key name> base64(key ID (4 bytes) || Ed25519 signature (64 bytes))

where the key ID is the first four bytes of SHA-256(key name || 0x0A || 0x01 || public
key). Verifiers are configured with a *vkey*, ``<name>+<hex key ID>+base64(0x01 || public
key)``, the format Go's ``sumdb/note`` and the transparency-dev tools share, so a standard
witness or auditor tool can check obmin's checkpoints.

`verify_checkpoint` returns a `Checkpoint` built only from the verified body, or raises
`InvalidCheckpoint`. Signatures by other keys (a witness's cosignature) are ignored, as the
specification requires; a signature by the expected key that does not verify is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit.errors import InvalidCheckpoint
from gateway.audit.merkle import HASH_SIZE

__all__ = [
    "Checkpoint",
    "VerifierKey",
    "key_id",
    "sign_checkpoint",
    "verify_checkpoint",
]

_ALG_ED25519: Final = 0x01
_SIG_PREFIX: Final = "\u2014 "  # em dash and a space
_MAX_NOTE: Final = 64 * 1024
_MAX_SIGNATURES: Final = 100
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")  # decimal, no leading zeros, below 10^19
# Text: no ASCII control character other than the newline that ends each line.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name) or _CONTROL.search(name):
        raise InvalidCheckpoint(f"{name!r} is not a valid key name (non-empty, no spaces or '+')")


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The C2SP signed-note key ID of an Ed25519 key: SHA-256(name \\n 0x01 key)[:4]."""
    material = name.encode("utf-8") + b"\n" + bytes([_ALG_ED25519]) + _raw_public_key(public_key)
    return hashlib.sha256(material).digest()[:4]


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A named Ed25519 note-verification key (what an auditor configures)."""

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def key_id(self) -> bytes:
        """The four-byte key ID that prefixes this key's signatures."""
        return key_id(self.name, self.public_key)

    def to_vkey(self) -> str:
        """The vkey string: ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        material = base64.b64encode(bytes([_ALG_ED25519]) + _raw_public_key(self.public_key))
        return f"{self.name}+{self.key_id.hex()}+{material.decode('ascii')}"

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        """Read a vkey string; raises `InvalidCheckpoint` unless it is a well-formed
        Ed25519 key whose key ID matches its name and key."""
        parts = vkey.strip().split("+", 2)  # the base64 key itself may contain '+'
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise InvalidCheckpoint("a vkey is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, material = parts
        try:
            raw = base64.b64decode(material, validate=True)
        except binascii.Error as exc:
            raise InvalidCheckpoint("the vkey's key is not base64") from exc
        if len(raw) != 33 or raw[0] != _ALG_ED25519:
            raise InvalidCheckpoint("the vkey is not an Ed25519 key (0x01 and 32 bytes)")
        key = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if key.key_id.hex() != hex_id:
            raise InvalidCheckpoint(f"the vkey's key ID {hex_id} does not match its name and key")
        return key


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed state: origin, tree size and root hash, and the signed note itself."""

    origin: str
    size: int
    root: bytes
    note: str

    @property
    def body(self) -> str:
        """The signed text: origin, size and base64 root lines (and any extension lines)."""
        return self.note[: self.note.rindex("\n\n") + 1]


def _body(origin: str, size: int, root: bytes) -> str:
    if not origin or "\n" in origin or _CONTROL.search(origin):
        raise InvalidCheckpoint(f"{origin!r} is not a valid origin line")
    if not 0 <= size < 2**63:
        raise InvalidCheckpoint(f"tree size {size} is out of range")
    if len(root) != HASH_SIZE:
        raise InvalidCheckpoint("the root hash is not 32 bytes")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def sign_checkpoint(
    origin: str, size: int, root: bytes, key: Ed25519PrivateKey, key_name: str
) -> Checkpoint:
    """The checkpoint of the tree (``size``, ``root``) of log ``origin``, signed by ``key``.

    Raises `InvalidCheckpoint` for an origin or key name the format cannot carry.
    """
    _check_name(key_name)
    body = _body(origin, size, root)
    signature = key.sign(body.encode("utf-8"))
    blob = key_id(key_name, key.public_key()) + signature
    line = f"{_SIG_PREFIX}{key_name} {base64.b64encode(blob).decode('ascii')}\n"
    return Checkpoint(origin=origin, size=size, root=root, note=f"{body}\n{line}")


def _split_note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The signed body and the (key name, signature blob) pairs of a signed note."""
    if len(text) > _MAX_NOTE:
        raise InvalidCheckpoint(f"the note is longer than {_MAX_NOTE} characters")
    if not text.endswith("\n") or "\n\n" not in text:
        raise InvalidCheckpoint("the note has no signature block")
    split = text.rindex("\n\n")
    body, block = text[: split + 1], text[split + 2 :]
    if _CONTROL.search(body):
        raise InvalidCheckpoint("the note text holds control characters")
    lines = block[:-1].split("\n")
    if not 0 < len(lines) <= _MAX_SIGNATURES:
        raise InvalidCheckpoint(f"a note needs 1 to {_MAX_SIGNATURES} signatures")
    signatures: list[tuple[str, bytes]] = []
    for line in lines:
        name, _, encoded = line.removeprefix(_SIG_PREFIX).rpartition(" ")
        if not line.startswith(_SIG_PREFIX) or not name:
            raise InvalidCheckpoint(f"malformed signature line {line!r}")
        _check_name(name)
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise InvalidCheckpoint(f"the signature of {name} is not base64") from exc
        if len(blob) < 5:
            raise InvalidCheckpoint(f"the signature of {name} is too short")
        signatures.append((name, blob))
    return body, signatures


def _parse_body(body: str) -> tuple[str, int, bytes]:
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise InvalidCheckpoint("a checkpoint is an origin, a size and a root hash line")
    origin, size_text, root_text = lines[:3]
    if not _SIZE.fullmatch(size_text) or int(size_text) >= 2**63:
        raise InvalidCheckpoint(f"{size_text!r} is not a tree size")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise InvalidCheckpoint("the root hash line is not base64") from exc
    if len(root) != HASH_SIZE:
        raise InvalidCheckpoint("the root hash is not 32 bytes")
    return origin, int(size_text), root


def verify_checkpoint(
    text: str,
    public_key: Ed25519PublicKey | VerifierKey,
    key_name: str | None = None,
    *,
    origin: str,
) -> Checkpoint:
    """The checkpoint in ``text`` if it is signed by ``public_key`` under ``key_name`` and is
    for the log ``origin``; raises `InvalidCheckpoint` otherwise.

    ``public_key`` may be a `VerifierKey` (then ``key_name`` defaults to its name).
    """
    if isinstance(public_key, VerifierKey):
        key = public_key
        if key_name is not None and key_name != key.name:
            raise InvalidCheckpoint(f"the key is named {key.name!r}, not {key_name!r}")
    elif key_name is None:
        raise InvalidCheckpoint("a bare public key needs its key name")
    else:
        key = VerifierKey(key_name, public_key)
    body, signatures = _split_note(text)
    expected_id = key.key_id
    verified = False
    for name, blob in signatures:
        if name != key.name or blob[:4] != expected_id:
            continue  # another key's signature (a witness): not ours to judge
        try:
            key.public_key.verify(blob[4:], body.encode("utf-8"))
        except InvalidSignature as exc:
            raise InvalidCheckpoint(f"the signature of {key.name} does not verify") from exc
        verified = True
    if not verified:
        raise InvalidCheckpoint(f"the note is not signed by {key.name}+{expected_id.hex()}")
    found_origin, size, root = _parse_body(body)
    if found_origin != origin:
        raise InvalidCheckpoint(f"the checkpoint is for {found_origin!r}, not {origin!r}")
    return Checkpoint(origin=found_origin, size=size, root=root, note=text)
