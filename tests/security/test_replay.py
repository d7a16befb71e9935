"""Replay cache (SPEC 5.5): the same suite runs against the in-memory and the Redis cache.

Redis tests use the server on 127.0.0.1:6379 (skipped with a reason when it is not there), a
key prefix of their own that is deleted afterwards, and short windows with real sleeps, since
Redis expires keys by its own clock.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.errors import Side, fault_for
from security.errors import (
    ReplayCacheFull,
    ReplayCacheUnavailable,
    ReplayedMessage,
    SecurityError,
    StaleMessage,
)
from security.replay import MemoryReplayCache, RedisReplayCache, ReplayCache, replay_key

REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = Path(__file__).parents[2]
WINDOW = timedelta(milliseconds=300)
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
    """A cache under test, a clock for it and a way to open more instances on the same store."""

    name: str
    cache: ReplayCache
    now: datetime
    real_time: bool
    prefix: str = ""
    others: list[ReplayCache] = field(default_factory=list)

    async def advance(self, delta: timedelta) -> None:
        """Move the clock on; Redis needs the time to pass for real."""
        self.now += delta
        if self.real_time:
            await asyncio.sleep(delta.total_seconds())

    async def remember(
        self, client: str, message_id: str, *, created: datetime | None = None
    ) -> None:
        await self.cache.remember(client, message_id, created=created, now=self.now, window=WINDOW)

    def another(self) -> RedisReplayCache:
        """A second Redis cache on the same keys, as another gateway process would hold."""
        other = RedisReplayCache(REDIS_URL, key_prefix=self.prefix)
        self.others.append(other)
        return other


@asynccontextmanager
async def _open(kind: str) -> AsyncIterator[Backend]:
    if kind == "memory":
        yield Backend("memory", MemoryReplayCache(), datetime(2025, 3, 14, 9, 0, tzinfo=UTC), False)
        return
    if not _redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    prefix = f"obmin-test:{uuid.uuid4().hex}:"
    backend = Backend(
        "redis", RedisReplayCache(REDIS_URL, key_prefix=prefix), datetime.now(UTC), True, prefix
    )
    try:
        yield backend
    finally:
        for cache in [backend.cache, *backend.others]:
            await cache.aclose()
        async with Redis.from_url(REDIS_URL) as redis:
            keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await redis.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each cache implementation in turn; Redis with a unique key prefix, cleaned up after."""
    async with _open(request.param) as opened:
        yield opened


@pytest.fixture
async def redis_backend() -> AsyncIterator[Backend]:
    """The Redis cache alone, for what only a shared cache can do."""
    async with _open("redis") as opened:
        yield opened


# -- the contract, for both implementations --------------------------------------------------


async def test_first_accepted_then_replay_refused(backend: Backend) -> None:
    await backend.remember(CLIENT, "msg-1")
    with pytest.raises(ReplayedMessage) as caught:
        await backend.remember(CLIENT, "msg-1")
    fault = fault_for(caught.value)
    assert (fault.side, fault.full_code(), fault.http_status) == (
        Side.CLIENT,
        "Client.ReplayedMessage",
        400,
    )
    assert "msg-1" not in fault.message  # peers are not echoed their own identifiers


async def test_pairs_are_independent(backend: Backend) -> None:
    await backend.remember(CLIENT, "msg-1")
    await backend.remember(OTHER_CLIENT, "msg-1")  # same id, other client
    await backend.remember(CLIENT, "msg-2")
    # Separators inside identifiers cannot make two pairs collide.
    await backend.remember("a/b", "c")
    await backend.remember("a", "b/c")
    await backend.remember("a\x00b", "c")


async def test_entry_expires_after_the_window(backend: Backend) -> None:
    await backend.remember(CLIENT, "msg-1")
    await backend.advance(WINDOW / 2)
    with pytest.raises(ReplayedMessage):
        await backend.remember(CLIENT, "msg-1")
    await backend.advance(WINDOW / 2 + timedelta(milliseconds=50))
    await backend.remember(CLIENT, "msg-1")  # forgotten: a copy would be stale by now


async def test_future_created_time_keeps_the_entry_longer(backend: Backend) -> None:
    created = backend.now + timedelta(milliseconds=200)
    await backend.remember(CLIENT, "msg-1", created=created)
    await backend.advance(WINDOW + timedelta(milliseconds=50))
    # Still fresh by its timestamp (150 ms old): remembered for 500 ms, not 300.
    with pytest.raises(ReplayedMessage):
        await backend.remember(CLIENT, "msg-1", created=created)


async def test_stale_created_time_is_refused_and_not_stored(backend: Backend) -> None:
    for created in (backend.now - WINDOW * 2, backend.now + WINDOW * 2):
        with pytest.raises(StaleMessage):
            await backend.remember(CLIENT, "msg-1", created=created)
    await backend.remember(CLIENT, "msg-1")


async def test_concurrent_deliveries_accept_exactly_one(backend: Backend) -> None:
    caches = [backend.cache] * 20
    if backend.name == "redis":
        caches = [backend.cache, backend.another()] * 10
    results = await asyncio.gather(
        *(
            cache.remember(CLIENT, "msg-1", created=None, now=backend.now, window=WINDOW)
            for cache in caches
        ),
        return_exceptions=True,
    )
    assert results.count(None) == 1
    assert all(isinstance(r, ReplayedMessage) for r in results if r is not None)


async def test_non_positive_window_is_a_bug(backend: Backend) -> None:
    with pytest.raises(SecurityError) as caught:
        await backend.cache.remember(
            CLIENT, "msg-1", created=None, now=backend.now, window=timedelta(0)
        )
    assert caught.value.code == "InternalError"


# -- in memory: bounded, fail closed ---------------------------------------------------------


async def test_memory_cache_refuses_when_full_of_live_entries() -> None:
    cache = MemoryReplayCache(max_entries=2)
    now = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    await cache.remember(CLIENT, "a", created=None, now=now, window=WINDOW)
    await cache.remember(CLIENT, "b", created=None, now=now, window=WINDOW)
    with pytest.raises(ReplayCacheFull) as caught:
        await cache.remember(CLIENT, "c", created=None, now=now, window=WINDOW)
    assert fault_for(caught.value).full_code() == "Server.ClientProxy.ReplayCacheFull"
    assert fault_for(caught.value).http_status == 503
    # Live entries were not evicted to make room: both are still replays.
    for message_id in ("a", "b"):
        with pytest.raises(ReplayedMessage):
            await cache.remember(CLIENT, message_id, created=None, now=now, window=WINDOW)
    # Once they expire there is room again, and expired entries are gone.
    later = now + WINDOW
    await cache.remember(CLIENT, "c", created=None, now=later, window=WINDOW)
    assert len(cache) == 1


@given(
    st.tuples(st.text(max_size=8), st.text(max_size=8)),
    st.tuples(st.text(max_size=8), st.text(max_size=8)),
)
def test_replay_key_is_injective(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert (replay_key(*first) == replay_key(*second)) == (first == second)


# -- Redis: shared between processes, fail closed --------------------------------------------


async def test_two_instances_share_the_cache(redis_backend: Backend) -> None:
    other = redis_backend.another()
    await redis_backend.remember(CLIENT, "msg-1")
    with pytest.raises(ReplayedMessage):
        await other.remember(CLIENT, "msg-1", created=None, now=redis_backend.now, window=WINDOW)
    await other.remember(CLIENT, "msg-2", created=None, now=redis_backend.now, window=WINDOW)
    with pytest.raises(ReplayedMessage):
        await redis_backend.remember(CLIENT, "msg-2")


_CHILD = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from security.errors import SecurityError
from security.replay import RedisReplayCache

async def main() -> None:
    cache = RedisReplayCache(sys.argv[1], key_prefix=sys.argv[2])
    try:
        await cache.remember(sys.argv[3], sys.argv[4], created=None,
                             now=datetime.now(UTC), window=timedelta(seconds=5))
        print("accepted")
    except SecurityError as exc:
        print(exc.code)
    finally:
        await cache.aclose()

asyncio.run(main())
"""


async def _in_child_process(prefix: str, message_id: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, REDIS_URL, prefix, CLIENT, message_id,
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 0
    return stdout.decode().strip()


async def test_another_process_sees_the_same_cache(redis_backend: Backend) -> None:
    window = timedelta(seconds=5)
    assert await _in_child_process(redis_backend.prefix, "msg-1") == "accepted"
    with pytest.raises(ReplayedMessage):
        await redis_backend.cache.remember(
            CLIENT, "msg-1", created=None, now=redis_backend.now, window=window
        )
    await redis_backend.cache.remember(
        CLIENT, "msg-2", created=None, now=redis_backend.now, window=window
    )
    assert await _in_child_process(redis_backend.prefix, "msg-2") == "ReplayedMessage"


async def test_redis_key_is_hashed_and_expires(redis_backend: Backend) -> None:
    await redis_backend.remember(CLIENT, "msg-1")
    expected = redis_backend.prefix + replay_key(CLIENT, "msg-1").hex()
    async with Redis.from_url(REDIS_URL) as redis:
        assert [key async for key in redis.scan_iter(match=f"{redis_backend.prefix}*")] == [
            expected.encode()
        ]
        assert 0 < await redis.pttl(expected) <= WINDOW / timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "url", [f"redis://127.0.0.1:{_closed_port()}/0", "nosuchscheme://127.0.0.1"]
)
async def test_unreachable_redis_refuses_with_a_coded_error(url: str) -> None:
    with pytest.raises(ReplayCacheUnavailable) as caught:
        cache = RedisReplayCache(url, timeout=0.5)
        try:
            await cache.remember(
                CLIENT, "msg-1", created=None, now=datetime.now(UTC), window=WINDOW
            )
        finally:
            await cache.aclose()
    fault = fault_for(caught.value)
    assert fault.full_code() == "Server.ClientProxy.ReplayCacheUnavailable"
    assert fault.http_status == 503
    assert "127.0.0.1" not in fault.message
