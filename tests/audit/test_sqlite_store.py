"""The SQLite audit store: round trip, group commit, sequence numbers, queries, durability."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.audit import (
    AuditError,
    InvalidAuditQuery,
    SqliteAuditStore,
    leaf_hash,
)
from tests.audit.drafts import CLIENT, SERVICE, exchange, make_draft

REPO = Path(__file__).resolve().parents[2]


async def test_append_and_read_back(store: SqliteAuditStore, db_path: Path) -> None:
    drafts = exchange("m-1", policy="plain")
    records = await store.append(drafts)
    assert [r.seq for r in records] == [0, 1]
    assert [r.direction for r in records] == ["request", "response"]
    assert records[1].duration_ms == 12.5
    assert await store.by_request_id(drafts[0].request_id) == records
    assert (await store.by_request_id(drafts[0].request_id))[0].body == drafts[0].body
    assert await store.count() == 2
    # The row holds the canonical JSON and its RFC 9162 leaf hash, for the Merkle tree.
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT seq, canonical, leaf_hash FROM records ORDER BY seq").fetchall()
        (journal,) = raw.execute("PRAGMA journal_mode").fetchone()
    raw.close()
    assert journal == "wal"
    assert [(seq, bytes(c), bytes(h)) for seq, c, h in rows] == [
        (r.seq, r.to_canonical_json(), leaf_hash(r)) for r in records
    ]


async def test_group_commit_batches_concurrent_appends(store: SqliteAuditStore) -> None:
    drafts = [make_draft(message_id=f"m-{i}") for i in range(200)]
    results = await asyncio.gather(*(store.append([d]) for d in drafts))
    stats = store.stats()
    assert stats.records == 200 and stats.queue_depth == 0
    assert stats.commits < 20, stats  # one fsync served many appends
    # Each caller got its own record back; seq is contiguous from 0.
    assert [r[0].message_id for r in results] == [d.message_id for d in drafts]
    assert sorted(r[0].seq for r in results) == list(range(200))
    assert await store.count() == 200


async def test_without_group_commit_each_call_is_a_transaction(db_path: Path) -> None:
    store = SqliteAuditStore(db_path, group_commit=False)
    await store.open()
    try:
        await asyncio.gather(*(store.append(exchange(f"m-{i}")) for i in range(30)))
        assert store.stats().commits == 30 and store.stats().records == 60
    finally:
        await store.close()


async def test_one_call_is_one_unit_with_consecutive_seq(store: SqliteAuditStore) -> None:
    calls = [exchange(f"m-{i}") for i in range(50)]
    results = await asyncio.gather(*(store.append(c) for c in calls))
    for records in results:
        assert records[1].seq == records[0].seq + 1
        assert records[0].request_id == records[1].request_id
    all_records = await store.query(limit=1000)
    assert [r.seq for r in all_records] == list(range(100))


async def test_queries_filter_and_paginate(store: SqliteAuditStore) -> None:
    other_client = "SEVDEIR-TEST/GOV/11112222/OTHER"
    await store.append(exchange("a"))
    await store.append(exchange("b", client=other_client))
    await store.append(exchange("c", service=SERVICE + "x"))
    assert [r.message_id for r in await store.query(message_id="b")] == ["b", "b"]
    assert {r.message_id for r in await store.query(client=other_client)} == {"b"}
    assert {r.message_id for r in await store.query(client=CLIENT, service=SERVICE)} == {"a"}
    page1 = await store.query(limit=4)
    page2 = await store.query(after_seq=page1[-1].seq, limit=4)
    assert [r.seq for r in page1 + page2] == list(range(6))
    newest = await store.query(limit=2, newest_first=True)
    assert [r.seq for r in newest] == [5, 4]
    assert await store.query(message_id="nothing") == []
    for limit in (0, 10_001):
        with pytest.raises(InvalidAuditQuery):
            await store.query(limit=limit)


async def test_log_continues_after_reopen_and_two_stores_share_a_file(db_path: Path) -> None:
    first = SqliteAuditStore(db_path)
    await first.open()
    await first.append(exchange("a"))
    second = SqliteAuditStore(db_path)
    await second.open()
    try:
        results = await asyncio.gather(
            *(s.append(exchange(f"m-{i}")) for i in range(20) for s in (first, second))
        )
    finally:
        await first.close()
        await second.close()
    seqs = sorted(r.seq for records in results for r in records)
    assert seqs == list(range(2, 82))
    reopened = SqliteAuditStore(db_path)
    await reopened.open()
    try:
        assert (await reopened.append([make_draft()]))[0].seq == 82
    finally:
        await reopened.close()


async def test_close_flushes_queued_appends_then_refuses(db_path: Path) -> None:
    store = SqliteAuditStore(db_path)
    await store.open()
    pending = [asyncio.create_task(store.append(exchange(f"m-{i}"))) for i in range(40)]
    await asyncio.sleep(0)  # the appends are queued, most not yet committed
    await store.close()
    assert all(len(task.result()) == 2 for task in pending)
    with pytest.raises(AuditError, match="not open"):
        await store.append([make_draft()])
    with pytest.raises(AuditError, match="not open"):
        await store.count()
    assert not await store.check_writable()
    await store.close()  # idempotent

    reopened = SqliteAuditStore(db_path, read_only=True)
    await reopened.open()
    try:
        assert await reopened.count() == 80
    finally:
        await reopened.close()


_KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from gateway.audit import SqliteAuditStore
    from tests.audit.drafts import exchange

    async def main() -> None:
        store = SqliteAuditStore(Path(sys.argv[1]))
        await store.open()
        await asyncio.gather(*(store.append(exchange(f"m-{i}")) for i in range(100)))
        print("durable", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush, no checkpoint

    asyncio.run(main())
    """
)


async def test_records_survive_sigkill_once_append_returned(db_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WRITER,
        str(db_path),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == -9, stderr.decode()
    assert stdout == b"durable\n"
    store = SqliteAuditStore(db_path)
    await store.open()
    try:
        assert await store.count() == 200
        records = await store.query(limit=200)
        assert [r.seq for r in records] == list(range(200))
    finally:
        await store.close()
