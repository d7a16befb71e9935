"""Per-call cost of the replay cache (SPEC 5.5) and the rate limiter (SPEC 7).

Measures, in one invocation: the in-memory replay cache and token buckets (time per call and
memory per replay entry at steady state), and the Redis ones, one call at a time (latency
p50/p99) and with ``--concurrency`` calls in flight (time per call). A bare Redis ``PING`` over
the same kind of client is the baseline for the Redis figures: the ratio shows what the
command or script costs over a network round trip.

    .venv/bin/python bench/replay_ratelimit.py [--calls 20000] [--concurrency 64]
        [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.ratelimit import MemoryRateLimiter, RateLimited, RedisRateLimiter
from security.replay import MemoryReplayCache, RedisReplayCache

CLIENT = "SEVDEIR-TEST/GOV/12345678/WSCLIENT"
WINDOW = timedelta(seconds=300)

Call = Callable[[int], Awaitable[None]]


async def _sequential(call: Call, calls: int) -> tuple[float, float, float]:
    """Mean, p50 and p99 of one call at a time, in microseconds."""
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1e6)
    cuts = statistics.quantiles(samples, n=100)
    return statistics.fmean(samples), cuts[49], cuts[98]


async def _concurrent(call: Call, calls: int, concurrency: int) -> float:
    """Wall time per call, in microseconds, with ``concurrency`` calls in flight."""
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.perf_counter() - start) * 1e6 / calls


def _report(name: str, figures: tuple[float, float, float], per_call: float | None) -> None:
    mean, p50, p99 = figures
    line = f"{name:<34} mean {mean:8.1f} µs  p50 {p50:8.1f}  p99 {p99:8.1f}"
    if per_call is not None:
        line += f"  | concurrent {per_call:7.1f} µs/call"
    print(line)


async def _memory(calls: int) -> None:
    now = datetime.now(UTC)
    cache = MemoryReplayCache(max_entries=calls * 2)

    async def remember(i: int) -> None:
        # 1000 messages a second of simulated time: entries expire as new ones arrive.
        await cache.remember(
            CLIENT, f"m-{i}", created=None, now=now + timedelta(milliseconds=i), window=WINDOW
        )

    _report("memory replay cache", await _sequential(remember, calls), None)

    tracemalloc.start()
    filled = MemoryReplayCache(max_entries=calls)
    before = tracemalloc.get_traced_memory()[0]
    for i in range(calls):
        await filled.remember(CLIENT, f"m-{i}", created=None, now=now, window=WINDOW)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / calls
    tracemalloc.stop()
    print(f"{'memory replay cache, per entry':<34} {per_entry:8.0f} bytes")

    limiter = MemoryRateLimiter()

    async def acquire(i: int) -> None:
        with contextlib.suppress(RateLimited):
            await limiter.acquire(f"client-{i % 100}", rate=1e6, burst=10, now=i * 1e-6)

    _report("memory token bucket (100 clients)", await _sequential(acquire, calls), None)


async def _redis(url: str, calls: int, concurrency: int) -> None:
    prefix = f"obmin-bench:{uuid.uuid4().hex}:"
    ping_client = Redis.from_url(url)
    cache = RedisReplayCache(url, key_prefix=prefix + "replay:")
    limiter = RedisRateLimiter(url, key_prefix=prefix + "rate:")
    try:

        async def ping(i: int) -> None:
            await ping_client.ping()

        run = [0]

        async def remember(i: int) -> None:
            await cache.remember(
                CLIENT, f"m-{run[0]}-{i}", created=None, now=datetime.now(UTC), window=WINDOW
            )

        async def acquire(i: int) -> None:
            with contextlib.suppress(RateLimited):
                await limiter.acquire(f"client-{i % 100}", rate=1e6, burst=10, now=0.0)

        for name, call in (("redis PING (baseline)", ping), ("redis replay cache", remember),
                           ("redis token bucket (100 clients)", acquire)):  # fmt: skip
            await call(-1)  # connect and load the script outside the measurement
            sequential = await _sequential(call, calls)
            run[0] += 1
            per_call = await _concurrent(call, calls, concurrency)
            run[0] += 1
            _report(name, sequential, per_call)
    finally:
        await cache.aclose()
        await limiter.aclose()
        keys = [key async for key in ping_client.scan_iter(match=f"{prefix}*", count=10_000)]
        for start in range(0, len(keys), 10_000):
            await ping_client.delete(*keys[start : start + 10_000])
        await ping_client.aclose()


async def main() -> None:
    """Run every measurement and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(f"{args.calls} calls each; concurrency {args.concurrency} for the Redis runs")
    await _memory(args.calls)
    try:
        async with Redis.from_url(args.redis) as probe:
            await probe.ping()
    except (RedisError, OSError) as exc:
        print(f"Redis part skipped: {args.redis} unreachable ({exc!r})")
        return
    await _redis(args.redis, args.calls, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
