"""Per-client rate limits (SPEC 7): the same suite runs against memory and Redis buckets.

The memory limiter takes the time from the test; the Redis limiter times buckets by the Redis
server's clock, so its tests sleep for real (short periods, high rates). Redis tests skip with
a reason when 127.0.0.1:6379 is unreachable and delete their own keys afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.errors import GatewayError, Side, fault_for
from gateway.ratelimit import (
    MemoryRateLimiter,
    RateLimited,
    RateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
CLIENT = "SEVDEIR-TEST/GOV/12345678/WSCLIENT"
OTHER_CLIENT = "SEVDEIR-TEST/GOV/87654321/WSCLIENT"


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.2).close()
    except OSError:
        return False
    return True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Backend:
    """A limiter under test and a clock for it."""

    name: str
    limiter: RateLimiter
    real_time: bool
    prefix: str = ""
    now: float = 1000.0
    others: list[RateLimiter] = field(default_factory=list)

    async def advance(self, seconds: float) -> None:
        """Move the clock on; the Redis server's clock needs the time to pass for real."""
        self.now += seconds
        if self.real_time:
            await asyncio.sleep(seconds)

    async def acquire(self, key: str = CLIENT, *, rate: float, burst: int) -> None:
        await self.limiter.acquire(key, rate=rate, burst=burst, now=self.now)

    async def accepted(self, count: int, *, rate: float, burst: int) -> int:
        """How many of ``count`` back-to-back requests get a token."""
        accepted = 0
        for _ in range(count):
            try:
                await self.acquire(rate=rate, burst=burst)
            except RateLimited:
                continue
            accepted += 1
        return accepted

    def another(self) -> RedisRateLimiter:
        """A second Redis limiter on the same keys, as another gateway process would hold."""
        other = RedisRateLimiter(REDIS_URL, key_prefix=self.prefix)
        self.others.append(other)
        return other


@asynccontextmanager
async def _open(kind: str) -> AsyncIterator[Backend]:
    if kind == "memory":
        yield Backend("memory", MemoryRateLimiter(), False)
        return
    if not _redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    prefix = f"obmin-test:{uuid.uuid4().hex}:"
    backend = Backend("redis", RedisRateLimiter(REDIS_URL, key_prefix=prefix), True, prefix)
    try:
        yield backend
    finally:
        for limiter in [backend.limiter, *backend.others]:
            await limiter.aclose()
        async with Redis.from_url(REDIS_URL) as redis:
            keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await redis.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each limiter implementation in turn."""
    async with _open(request.param) as opened:
        yield opened


@pytest.fixture
async def redis_backend() -> AsyncIterator[Backend]:
    """The Redis limiter alone."""
    async with _open("redis") as opened:
        yield opened


# -- the contract, for both implementations --------------------------------------------------


async def test_burst_then_refusal_then_refill(backend: Backend) -> None:
    assert await backend.accepted(3, rate=2, burst=3) == 3
    with pytest.raises(RateLimited) as caught:
        await backend.acquire(rate=2, burst=3)
    assert 0 < caught.value.retry_after <= 0.5
    assert caught.value.retry_after_header == "1"
    fault = fault_for(caught.value)
    assert (fault.side, fault.full_code(), fault.http_status) == (
        Side.CLIENT,
        "Client.RateLimited",
        429,
    )
    await backend.advance(0.6)  # 1.2 tokens back
    assert await backend.accepted(2, rate=2, burst=3) == 1


async def test_retry_after_is_enough(backend: Backend) -> None:
    assert await backend.accepted(2, rate=5, burst=1) == 1
    with pytest.raises(RateLimited) as caught:
        await backend.acquire(rate=5, burst=1)
    await backend.advance(caught.value.retry_after + 0.01)
    await backend.acquire(rate=5, burst=1)


async def test_an_idle_bucket_holds_no_more_than_the_burst(backend: Backend) -> None:
    assert await backend.accepted(5, rate=10, burst=2) == 2
    await backend.advance(0.5)  # 5 tokens' worth of time, capped at 2
    assert await backend.accepted(5, rate=10, burst=2) == 2


async def test_clients_have_their_own_buckets(backend: Backend) -> None:
    await backend.acquire(CLIENT, rate=1, burst=1)
    await backend.acquire(OTHER_CLIENT, rate=1, burst=1)
    with pytest.raises(RateLimited):
        await backend.acquire(CLIENT, rate=1, burst=1)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
async def test_invalid_limits_are_a_bug(backend: Backend, rate: float, burst: int) -> None:
    with pytest.raises(GatewayError) as caught:
        await backend.acquire(rate=rate, burst=burst)
    assert caught.value.code == "InternalError"


# -- in memory: bounded table ----------------------------------------------------------------


async def test_memory_table_is_bounded_and_evicts_the_least_recently_used() -> None:
    limiter = MemoryRateLimiter(max_keys=2)
    for key in ("a", "b"):
        await limiter.acquire(key, rate=1, burst=1, now=0.0)
    await limiter.acquire("c", rate=1, burst=1, now=0.1)  # evicts "a", the least recent
    assert len(limiter) == 2
    with pytest.raises(RateLimited):  # "b" kept its empty bucket
        await limiter.acquire("b", rate=1, burst=1, now=0.2)
    await limiter.acquire("a", rate=1, burst=1, now=0.3)  # evicted: starts full again


async def test_memory_drops_buckets_that_are_full_again() -> None:
    limiter = MemoryRateLimiter()
    for i in range(100):
        await limiter.acquire(f"client-{i}", rate=10, burst=1, now=0.0)
    await limiter.acquire("late", rate=10, burst=1, now=1.0)  # all others refilled by now
    assert len(limiter) == 1


def _run_calls(rate: float, burst: int, gaps: list[float]) -> tuple[list[float], list[bool]]:
    async def run() -> tuple[list[float], list[bool]]:
        limiter = MemoryRateLimiter()
        times, outcomes, now = [], [], 0.0
        for gap in gaps:
            now += gap
            try:
                await limiter.acquire(CLIENT, rate=rate, burst=burst, now=now)
            except RateLimited as exc:
                assert exc.retry_after > 0
                outcomes.append(False)
            else:
                outcomes.append(True)
            times.append(now)
        return times, outcomes

    return asyncio.run(run())


@settings(deadline=None)
@given(
    st.floats(min_value=0.1, max_value=100),
    st.integers(min_value=1, max_value=10),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=60),
)
def test_memory_bucket_never_exceeds_burst_plus_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    times, outcomes = _run_calls(rate, burst, gaps)
    for i in range(len(times)):
        for j in range(i, len(times)):
            accepted = sum(outcomes[i : j + 1])
            assert accepted <= burst + rate * (times[j] - times[i]) + 1e-9


@settings(deadline=None)
@given(st.floats(min_value=0.1, max_value=100), st.integers(min_value=1, max_value=10))
def test_memory_retry_after_is_exact(rate: float, burst: int) -> None:
    async def run() -> None:
        limiter = MemoryRateLimiter()
        for _ in range(burst):
            await limiter.acquire(CLIENT, rate=rate, burst=burst, now=0.0)
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire(CLIENT, rate=rate, burst=burst, now=0.0)
        await limiter.acquire(CLIENT, rate=rate, burst=burst, now=caught.value.retry_after * 1.001)

    asyncio.run(run())


# -- Redis: shared between processes, failures -----------------------------------------------


async def test_redis_buckets_are_shared_between_instances(redis_backend: Backend) -> None:
    other = redis_backend.another()
    await redis_backend.acquire(rate=1, burst=2)
    await other.acquire(CLIENT, rate=1, burst=2, now=0.0)
    with pytest.raises(RateLimited):
        await redis_backend.acquire(rate=1, burst=2)
    with pytest.raises(RateLimited):
        await other.acquire(CLIENT, rate=1, burst=2, now=0.0)


async def test_redis_concurrent_requests_take_exactly_the_burst(redis_backend: Backend) -> None:
    limiters = [redis_backend.limiter, redis_backend.another()] * 15
    results = await asyncio.gather(
        *(limiter.acquire(CLIENT, rate=0.5, burst=5, now=0.0) for limiter in limiters),
        return_exceptions=True,
    )
    assert results.count(None) == 5
    assert all(isinstance(r, RateLimited) for r in results if r is not None)


async def test_redis_reloads_a_flushed_script(redis_backend: Backend) -> None:
    await redis_backend.acquire(rate=1, burst=2)
    async with Redis.from_url(REDIS_URL) as redis:
        await redis.script_flush()
        await redis_backend.acquire(rate=1, burst=2)  # EVALSHA fails, script loaded, retried
        with pytest.raises(RateLimited):
            await redis_backend.acquire(rate=1, burst=2)
        assert 0 < await redis.pttl(redis_backend.prefix + CLIENT) <= 3000


async def test_redis_garbage_is_a_coded_error(redis_backend: Backend) -> None:
    async with Redis.from_url(REDIS_URL) as redis:
        await redis.set(redis_backend.prefix + CLIENT, "not a hash")
    with pytest.raises(RateLimiterUnavailable):
        await redis_backend.acquire(rate=1, burst=1)


@pytest.mark.parametrize(
    "url", [f"redis://127.0.0.1:{_closed_port()}/0", "nosuchscheme://127.0.0.1"]
)
async def test_unreachable_redis_fails_closed(url: str) -> None:
    with pytest.raises(RateLimiterUnavailable) as caught:
        limiter = RedisRateLimiter(url, timeout=0.5)
        try:
            await limiter.acquire(CLIENT, rate=1, burst=1, now=0.0)
        finally:
            await limiter.aclose()
    fault = fault_for(caught.value)
    assert (fault.full_code(), fault.http_status) == (
        "Server.ClientProxy.RateLimiterUnavailable",
        503,
    )
    assert "127.0.0.1" not in fault.message


async def test_unreachable_redis_can_fail_open() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{_closed_port()}/0", timeout=0.5, fail_open=True)
    for _ in range(3):
        await limiter.acquire(CLIENT, rate=1, burst=1, now=0.0)
    await limiter.aclose()
