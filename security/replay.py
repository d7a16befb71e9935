"""Replay protection (SPEC 5.5): the pair (client, message id) is accepted once per window.

The gateway calls `ReplayCache.remember` after the signature and its timestamp have been
verified. The first call for a pair returns; a second call for the same pair while the first
is still remembered raises `ReplayedMessage`. An entry is kept for ``window`` (the freshness
window, ``max_clock_skew``) after the later of ``now`` and the signed ``created`` time: as long
as a copy of the message could still pass the freshness check, its id is still remembered.

Two implementations, one contract:

- `MemoryReplayCache` for one gateway process. It is bounded; when full of entries that are
  still needed it refuses new messages with `ReplayCacheFull` (fail closed) instead of evicting
  one, because an evicted entry is a replay let through: an attacker able to send many unique
  ids could otherwise flush a captured message out of the cache and replay it.
- `RedisReplayCache` for several processes or hosts. One ``SET key token NX PX ttl GET`` per
  message is atomic across all of them; Redis expires the key. Any Redis failure refuses the
  message with `ReplayCacheUnavailable` (fail closed): without the shared cache obmin cannot
  tell a replay from a first delivery.

Keys are the SHA-256 of a length-prefixed encoding of (client, message id), so no choice of
message id can collide with another client's pair or smuggle structure into a Redis key.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import secrets
from datetime import datetime, timedelta
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from security.errors import (
    ReplayCacheFull,
    ReplayCacheUnavailable,
    ReplayedMessage,
    SecurityError,
    StaleMessage,
)

__all__ = [
    "MemoryReplayCache",
    "RedisReplayCache",
    "ReplayCache",
    "replay_key",
]

_KEY_DOMAIN = b"obmin/replay/v1\x00"
_REPLAYED = "This message id was already used by the client within the freshness window."


class ReplayCache(Protocol):
    """Remembers (client, message id) pairs for the freshness window."""

    async def remember(
        self,
        client: str,
        message_id: str,
        *,
        created: datetime | None,
        now: datetime,
        window: timedelta,
    ) -> None:
        """Record the pair, or raise `ReplayedMessage` if it is already remembered.

        ``created`` is the message's signed creation time (``wsu:Created``, RFC 9421
        ``created``) when it has one. Raises `StaleMessage` if ``created`` lies outside
        ``now`` ± ``window`` (the caller should have refused it already), and
        `ReplayCacheFull` or `ReplayCacheUnavailable` when the pair cannot be recorded.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the cache is not used afterwards."""
        ...


def replay_key(client: str, message_id: str) -> bytes:
    """The 32-byte cache key of a pair: SHA-256 over a length-prefixed, domain-separated encoding.

    Length prefixes make the encoding injective: ``("a/b", "c")`` and ``("a", "b/c")`` give
    different keys whatever separators the identifiers contain.
    """
    digest = hashlib.sha256(_KEY_DOMAIN)
    for part in (client, message_id):
        raw = part.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return digest.digest()


def _time_to_live(created: datetime | None, now: datetime, window: timedelta) -> float:
    """Seconds from ``now`` for which the pair must be remembered.

    Raises `StaleMessage` for a ``created`` outside ``now`` ± ``window``: such a message is
    not fresh, and remembering it would let a far-future timestamp pin an entry for ever.
    """
    if window <= timedelta(0):
        raise SecurityError("the replay window must be positive")
    if created is None:
        return window.total_seconds()
    if abs(now - created) > window:
        raise StaleMessage("The message's creation time is outside the allowed clock skew.")
    return (max(now, created) - now + window).total_seconds()


class MemoryReplayCache:
    """A bounded in-process replay cache: a dict of live keys and a heap ordered by expiry.

    Expired entries are dropped on each call (amortised O(log n)). Not shared between
    processes; use `RedisReplayCache` when several gateway processes serve the same clients.
    """

    def __init__(self, *, max_entries: int = 250_000) -> None:
        if max_entries < 1:
            raise SecurityError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        """The number of remembered pairs, including any that expire at the next call."""
        return len(self._expiry)

    async def remember(
        self,
        client: str,
        message_id: str,
        *,
        created: datetime | None,
        now: datetime,
        window: timedelta,
    ) -> None:
        """See `ReplayCache.remember`. Runs without awaiting, so it is atomic on the loop."""
        ttl = _time_to_live(created, now, window)
        at = now.timestamp()
        self._expire(at)
        key = replay_key(client, message_id)
        if key in self._expiry:
            raise ReplayedMessage(_REPLAYED)
        if len(self._expiry) >= self._max_entries:
            raise ReplayCacheFull("The gateway cannot accept more messages at the moment.")
        expires = at + ttl
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))

    def _expire(self, at: float) -> None:
        # Each live key has exactly one heap entry (a key is only inserted while absent),
        # so popping the heap's head removes its dict entry too.
        heap = self._heap
        while heap and heap[0][0] <= at:
            _, key = heapq.heappop(heap)
            del self._expiry[key]

    async def aclose(self) -> None:
        """Forget everything."""
        self._expiry.clear()
        self._heap.clear()


class RedisReplayCache:
    """A replay cache shared through Redis (>= 7.0) by every gateway process that uses it.

    Each pair is one key ``<key_prefix><hex sha-256>`` written with ``SET NX PX GET`` and a
    random token: the write is atomic across processes, and a retried write whose first
    attempt did reach Redis recognises its own token instead of reporting a replay.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = "obmin:replay:",
        timeout: float = 1.0,
    ) -> None:
        try:
            self._redis = Redis.from_url(
                redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # One immediate retry covers a pooled connection that Redis closed.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ReplayCacheUnavailable("The replay cache URL is not valid.") from exc
        self._prefix = key_prefix

    async def remember(
        self,
        client: str,
        message_id: str,
        *,
        created: datetime | None,
        now: datetime,
        window: timedelta,
    ) -> None:
        """See `ReplayCache.remember`. Redis, not ``now``, decides when the key expires."""
        ttl_ms = max(1, math.ceil(_time_to_live(created, now, window) * 1000))
        key = self._prefix + replay_key(client, message_id).hex()
        token = secrets.token_bytes(16)
        try:
            previous = await self._redis.set(key, token, nx=True, px=ttl_ms, get=True)
        except (RedisError, OSError) as exc:
            raise ReplayCacheUnavailable("The replay cache is unavailable.") from exc
        if previous is not None and previous != token:
            raise ReplayedMessage(_REPLAYED)

    async def aclose(self) -> None:
        """Close the connection pool."""
        try:
            await self._redis.aclose()
        except (RedisError, OSError) as exc:
            raise ReplayCacheUnavailable("The replay cache did not close cleanly.") from exc
