"""Per-client rate limits (SPEC 7): a token bucket of ``burst`` tokens refilled at ``rate``/s.

Each accepted request takes one token; a request finding less than one token is refused with
`RateLimited` (``Client.RateLimited``, HTTP 429), which carries how long until a token is back.
The rate and burst come from the client's registry entry on every call, so a registry reload
applies at once.

- `MemoryRateLimiter` serves one gateway process. Its table is bounded: buckets that have
  refilled completely are dropped (they are the same as no bucket), and when the table is still
  full the least recently used bucket is evicted. That hands one idle client a fresh burst at
  worst; refusing clients instead would turn the limiter itself into a denial of service.
- `RedisRateLimiter` shares buckets between processes and hosts. One Lua script reads, refills
  and takes a token atomically, timed by the Redis server's clock (the only clock all gateway
  processes share; the caller's ``now`` is not used). It runs by EVALSHA and loads the script
  when Redis does not know it (after a restart or ``SCRIPT FLUSH``).

When Redis fails, `RedisRateLimiter` refuses the request with ``RateLimiterUnavailable``
(``Server.ClientProxy``, 503) by default. ``fail_open=True`` lets requests through instead and
logs a warning: rate limiting protects capacity, not authenticity, so an operator may prefer
availability; the replay cache, which protects authenticity, has no such switch.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import ClassVar, Protocol

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.errors import GatewayError

__all__ = [
    "MemoryRateLimiter",
    "RateLimited",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedisRateLimiter",
]

log = structlog.get_logger("obmin.ratelimit")


class RateLimited(GatewayError):
    """The client has used up its burst; ``retry_after`` says when the next token is back."""

    code: ClassVar[str] = "RateLimited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Too many requests from this client; retry after {retry_after:.3f} s.")
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """The value of an HTTP ``Retry-After`` header: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class RateLimiterUnavailable(GatewayError):
    """The shared rate limiter (Redis) cannot be reached or answered garbage."""

    code: ClassVar[str] = "RateLimiterUnavailable"


class RateLimiter(Protocol):
    """Token buckets keyed by client."""

    async def acquire(self, key: str, *, rate: float, burst: int, now: float) -> None:
        """Take one token from ``key``'s bucket or raise `RateLimited`.

        ``rate`` is tokens per second (> 0), ``burst`` the bucket size (>= 1), ``now`` the
        caller's monotonic clock in seconds. A new bucket starts full.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the limiter is not used afterwards."""
        ...


def _check_limits(rate: float, burst: int) -> None:
    if not (rate > 0 and math.isfinite(rate)) or burst < 1:
        # The registry validates limits; getting here is a bug, reported as InternalError.
        raise GatewayError(f"invalid rate limit: rate={rate!r} burst={burst!r}")


class MemoryRateLimiter:
    """Token buckets in a bounded LRU table, for one gateway process."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise GatewayError("max_keys must be at least 1")
        self._max_keys = max_keys
        # key -> (tokens, last refill time, time at which the bucket is full again)
        self._buckets: OrderedDict[str, tuple[float, float, float]] = OrderedDict()

    def __len__(self) -> int:
        """The number of buckets held."""
        return len(self._buckets)

    async def acquire(self, key: str, *, rate: float, burst: int, now: float) -> None:
        """See `RateLimiter.acquire`. Runs without awaiting, so it is atomic on the loop."""
        _check_limits(rate, burst)
        state = self._buckets.pop(key, None)
        if state is None:
            self._make_room(now)
            tokens, last = float(burst), now
        else:
            tokens, last, _ = state
            # A clock that steps back refills nothing, and does not move `last` back.
            tokens = min(float(burst), tokens + max(0.0, now - last) * rate)
            last = max(last, now)
        accepted = tokens >= 1.0
        if accepted:
            tokens -= 1.0
        self._buckets[key] = (tokens, last, last + (burst - tokens) / rate)
        if not accepted:
            raise RateLimited((1.0 - tokens) / rate)

    def _make_room(self, now: float) -> None:
        buckets = self._buckets
        # Oldest first: drop buckets that are full again, as they equal a missing bucket.
        while buckets and next(iter(buckets.values()))[2] <= now:
            buckets.popitem(last=False)
        while len(buckets) >= self._max_keys:
            buckets.popitem(last=False)

    async def aclose(self) -> None:
        """Forget every bucket."""
        self._buckets.clear()


# KEYS[1] bucket hash; ARGV[1] rate (tokens/s), ARGV[2] burst.
# Returns {1, "0"} when a token was taken, {0, "<seconds until one is back>"} otherwise;
# floats go back as strings because Redis truncates Lua numbers to integers.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', ts))
-- An idle bucket is full after burst / rate seconds; then it equals a missing one.
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil(burst / rate * 1000) + 1000, 1e12))
return {allowed, string.format('%.17g', wait)}
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisRateLimiter:
    """Token buckets shared through Redis, one hash ``<key_prefix><key>`` per client."""

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = "obmin:rate:",
        timeout: float = 1.0,
        fail_open: bool = False,
    ) -> None:
        try:
            self._redis = Redis.from_url(
                redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise RateLimiterUnavailable("The rate limiter URL is not valid.") from exc
        self._prefix = key_prefix
        self._fail_open = fail_open

    async def acquire(self, key: str, *, rate: float, burst: int, now: float) -> None:
        """See `RateLimiter.acquire`; ``now`` is ignored in favour of the Redis server's clock."""
        _check_limits(rate, burst)
        try:
            allowed, wait = await self._run(self._prefix + key, rate, burst)
        except RateLimiterUnavailable as exc:
            if not self._fail_open:
                raise
            log.warning("rate limiter unavailable, request allowed", error=repr(exc.__cause__))
            return
        if not allowed:
            raise RateLimited(wait)

    async def _run(self, key: str, rate: float, burst: int) -> tuple[bool, float]:
        args = (key, repr(float(rate)), str(burst))
        try:
            try:
                reply = await self._redis.evalsha(_SCRIPT_SHA, 1, *args)
            except NoScriptError:
                await self._redis.script_load(_SCRIPT)
                reply = await self._redis.evalsha(_SCRIPT_SHA, 1, *args)
            allowed, wait = reply
            return int(allowed) == 1, float(wait)
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailable("The rate limiter is unavailable.") from exc
        except (TypeError, ValueError) as exc:
            raise RateLimiterUnavailable("The rate limiter answered garbage.") from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        try:
            await self._redis.aclose()
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailable("The rate limiter did not close cleanly.") from exc
