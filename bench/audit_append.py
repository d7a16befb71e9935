"""Throughput of durable audit appends: group commit against one transaction per append.

Each run opens a fresh audit log — SQLite (WAL, synchronous=FULL) in a temporary directory
on the given filesystem, or PostgreSQL (synchronous_commit on) in a throwaway schema — and
lets ``--concurrency`` tasks append exchanges (a request and a response record per call,
as the pipeline's refusal path does, or one record per call with ``--records-per-call 1``)
until ``--calls`` calls are done. Both modes run in the same invocation with the same
drafts, so the ratio is what matters.

    .venv/bin/python bench/audit_append.py [--calls 4000] [--concurrency 64] [--dir /var/tmp]
        [--store sqlite|postgres|both] [--dsn postgresql://127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from gateway.audit import AuditRecordDraft, PostgresAuditStore, SqliteAuditStore, body_digest
from gateway.audit.store import AuditStore

BODY = b"<soap:Envelope>" + b"x" * 2000 + b"</soap:Envelope>"  # about 2 KB, as in SPEC P1
DIGEST = body_digest(BODY)  # records under body policy digest


def _drafts(count: int, per_call: int) -> list[list[AuditRecordDraft]]:
    now = datetime.now(UTC)
    calls = []
    for i in range(count):
        request_id = str(uuid.uuid4())
        calls.append(
            [
                AuditRecordDraft(
                    time=now,
                    direction="request" if j == 0 else "response",
                    request_id=request_id,
                    protocol="soap",
                    dialect="xroad",
                    outcome="ok",
                    peer="127.0.0.1",
                    message_id=f"m-{i}",
                    client="SEVDEIR-TEST/GOV/12345678/WSCLIENT",
                    service="SEVDEIR-TEST/GOV/87654321/REGISTRY/getPerson/v1",
                    user_id="UA:1234567890",
                    auth_mode="signature",
                    http_status=None if j == 0 else 200,
                    duration_ms=None if j == 0 else 3.2,
                    size=len(BODY),
                    body_digest=DIGEST,
                    body_policy="digest",
                )
                for j in range(per_call)
            ]
        )
    return calls


async def _run(
    store: AuditStore, calls: list[list[AuditRecordDraft]], concurrency: int
) -> dict[str, float]:
    await store.open()
    latencies: list[float] = []
    work = iter(calls)

    async def worker() -> None:
        for drafts in work:
            started = time.perf_counter()
            await store.append(drafts)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    stats = store.stats()
    await store.close()
    latencies.sort()
    return {
        "records_per_s": stats.records / elapsed,
        "calls_per_s": len(calls) / elapsed,
        "commits": stats.commits,
        "records_per_commit": stats.records / stats.commits,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def _sqlite(args: argparse.Namespace, calls: list[list[AuditRecordDraft]]) -> None:
    print(
        f"SQLite: {args.calls} calls x {args.records_per_call} record(s), "
        f"concurrency {args.concurrency}, durable (WAL, synchronous=FULL)"
    )
    results = {}
    for name, group in (("one transaction per append", False), ("group commit", True)):
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            store = SqliteAuditStore(Path(directory) / "audit.db", group_commit=group)
            results[name] = result = await _run(store, calls, args.concurrency)
        _print(name, result)
    _ratio(results)


async def _postgres(args: argparse.Namespace, calls: list[list[AuditRecordDraft]]) -> None:
    print(
        f"PostgreSQL: {args.calls} calls x {args.records_per_call} record(s), "
        f"concurrency {args.concurrency}, durable (synchronous_commit on)"
    )
    results = {}
    for name, group in (("one transaction per append", False), ("group commit", True)):
        schema = f"obmin_bench_{uuid.uuid4().hex[:10]}"
        store = PostgresAuditStore(
            args.dsn, "bench.obmin.local/gateway", schema=schema, group_commit=group, pool_size=8
        )
        try:
            results[name] = result = await _run(store, calls, args.concurrency)
        finally:
            conn = await asyncpg.connect(args.dsn)
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.close()
        _print(name, result)
    _ratio(results)


def _print(name: str, result: dict[str, float]) -> None:
    print(
        f"  {name:27} {result['records_per_s']:9.0f} records/s  "
        f"{result['commits']:6.0f} commits  {result['records_per_commit']:6.1f} rec/commit  "
        f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms"
    )


def _ratio(results: dict[str, dict[str, float]]) -> None:
    ratio = (
        results["group commit"]["records_per_s"]
        / results["one transaction per append"]["records_per_s"]
    )
    print(f"  group commit / one per append: {ratio:.1f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--records-per-call", type=int, choices=(1, 2), default=1)
    parser.add_argument("--dir", type=Path, default=None, help="filesystem to test (SQLite)")
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--dsn", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args()
    calls = _drafts(args.calls, args.records_per_call)
    if args.store in ("sqlite", "both"):
        await _sqlite(args, calls)
    if args.store in ("postgres", "both"):
        await _postgres(args, calls)


if __name__ == "__main__":
    asyncio.run(main())
