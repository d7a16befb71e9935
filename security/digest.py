"""``Content-Digest`` (RFC 9530): parse, check a body incrementally, and produce the header.

SPEC 5.2: the digest is checked against the body bytes before anything is forwarded. A REST
body may be large and spooled to disk, so `DigestChecker` is fed chunk by chunk and compares in
constant time at `DigestChecker.finish`. Only ``sha-256`` and ``sha-512`` are relied upon;
other members of the dictionary (``md5``, ``sha``, ``unixsum``... which RFC 9530 marks
insecure, or future ones) are ignored, and a header that states neither supported algorithm
is refused. Pure functions and values, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from security.errors import InvalidContentDigest, InvalidStructuredField, MissingContentDigest
from security.httpsig_sfv import Item, parse_dictionary

__all__ = [
    "DIGEST_ALGORITHMS",
    "ContentDigest",
    "DigestAlgorithm",
    "DigestChecker",
    "HashState",
    "check_content_digest",
    "content_digest_from_headers",
    "content_digest_header",
    "parse_content_digest",
]

DigestAlgorithm = Literal["sha-256", "sha-512"]
"""The RFC 9530 algorithm keys obmin relies on."""

_HASHES: dict[str, tuple[Callable[..., hashlib._Hash], str, int]] = {
    "sha-256": (hashlib.sha256, "sha256", 32),
    "sha-512": (hashlib.sha512, "sha512", 64),
}
DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("sha-256", "sha-512")


class HashState(Protocol):
    """What `content_digest_header` needs of a hashlib object that has seen the body."""

    @property
    def name(self) -> str:
        """hashlib's name of the algorithm (``sha256``, ``sha512``)."""

    def digest(self) -> bytes:
        """The digest of everything fed so far."""


@dataclass(frozen=True, slots=True)
class ContentDigest:
    """The digests a ``Content-Digest`` header states, for the supported algorithms only."""

    digests: tuple[tuple[DigestAlgorithm, bytes], ...]

    def get(self, algorithm: DigestAlgorithm) -> bytes | None:
        """The stated digest for ``algorithm``, or None."""
        for name, value in self.digests:
            if name == algorithm:
                return value
        return None

    @property
    def algorithms(self) -> tuple[DigestAlgorithm, ...]:
        """The supported algorithms the header states, in header order."""
        return tuple(name for name, _ in self.digests)


def _supported(name: str) -> DigestAlgorithm | None:
    if name == "sha-256":
        return "sha-256"
    if name == "sha-512":
        return "sha-512"
    return None


def parse_content_digest(value: str | Sequence[str], *, key: str | None = None) -> ContentDigest:
    """Parse a ``Content-Digest`` value (one string or the field lines of the header).

    ``key`` keeps only that dictionary member: what a signature covering
    ``"content-digest";key="sha-256"`` vouches for. Raises `InvalidContentDigest` for a value
    that is not a dictionary of byte sequences, a wrong digest length, a repeated algorithm
    or when no supported algorithm is stated.
    """
    text = value if isinstance(value, str) else ", ".join(value)
    try:
        members = parse_dictionary(text, unique_keys=True)
    except InvalidStructuredField as exc:
        raise InvalidContentDigest(f"Content-Digest is not a valid dictionary: {exc}") from exc
    if key is not None:
        if key not in members:
            raise InvalidContentDigest(f"Content-Digest has no {key!r} member")
        members = {key: members[key]}
    digests: list[tuple[DigestAlgorithm, bytes]] = []
    for name, member in members.items():
        algorithm = _supported(name)
        if algorithm is None:
            continue
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise InvalidContentDigest(f"Content-Digest {name} is not a byte sequence")
        if len(member.value) != _HASHES[algorithm][2]:
            raise InvalidContentDigest(f"Content-Digest {name} has the wrong length")
        digests.append((algorithm, member.value))
    if not digests:
        raise InvalidContentDigest("Content-Digest states neither sha-256 nor sha-512")
    return ContentDigest(tuple(digests))


def content_digest_from_headers(headers: Mapping[str, Sequence[str]]) -> ContentDigest:
    """The parsed ``content-digest`` of lowercased ``headers``; `MissingContentDigest` if none."""
    lines = headers.get("content-digest")
    if not lines:
        raise MissingContentDigest("the message has a body but no Content-Digest header")
    return parse_content_digest(lines)


class DigestChecker:
    """Hash a body fed in chunks and compare it with the stated digests at the end.

    One instance per message; not thread-safe. `finish` raises `InvalidContentDigest` on a
    mismatch of any stated algorithm and returns the computed digests (so that the caller
    can reuse, say, the SHA-512 for the audit log instead of hashing the body twice).
    """

    __slots__ = ("_expected", "_finished", "_hashes", "_size")

    def __init__(self, expected: ContentDigest) -> None:
        self._expected = expected
        self._hashes = [(name, _HASHES[name][0]()) for name in expected.algorithms]
        self._size = 0
        self._finished = False

    @property
    def size(self) -> int:
        """How many body bytes were fed so far."""
        return self._size

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Feed the next chunk of the body."""
        if self._finished:
            raise RuntimeError("DigestChecker.update() after finish()")
        for _, state in self._hashes:
            state.update(chunk)
        self._size += len(chunk)

    def finish(self) -> dict[DigestAlgorithm, bytes]:
        """Compare in constant time; raise `InvalidContentDigest` unless every digest matches."""
        self._finished = True
        computed: dict[DigestAlgorithm, bytes] = {}
        matches = True
        for name, state in self._hashes:
            actual = state.digest()
            computed[name] = actual
            stated = self._expected.get(name)
            # Compare every algorithm, not only up to the first mismatch.
            matches &= stated is not None and hmac.compare_digest(actual, stated)
        if not matches:
            raise InvalidContentDigest("the body does not match its Content-Digest")
        return computed


def check_content_digest(expected: ContentDigest, body: bytes) -> dict[DigestAlgorithm, bytes]:
    """`DigestChecker` for a body held in memory."""
    checker = DigestChecker(expected)
    checker.update(body)
    return checker.finish()


def content_digest_header(
    body_or_hash_state: bytes | bytearray | memoryview | HashState,
    alg: DigestAlgorithm = "sha-512",
) -> str:
    """The ``Content-Digest`` value for a body, e.g. ``sha-512=:...:``.

    Pass the body bytes, or a hashlib object of the same algorithm that has already seen the
    whole body (a spooled response hashed while it was written).
    """
    if alg not in _HASHES:
        raise InvalidContentDigest(f"unsupported digest algorithm {alg!r}")
    constructor, hashlib_name, _ = _HASHES[alg]
    if isinstance(body_or_hash_state, bytes | bytearray | memoryview):
        digest = constructor(body_or_hash_state).digest()
    else:
        if body_or_hash_state.name != hashlib_name:
            raise InvalidContentDigest(
                f"a {body_or_hash_state.name} hash cannot make a {alg} Content-Digest"
            )
        digest = body_or_hash_state.digest()
    return f"{alg}=:{base64.b64encode(digest).decode('ascii')}:"
